"""Checkpoint disk safety: fsync before the rename, stale temp files, a full disk (issue 14)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import torch

from tmrl2 import checkpoint as ckpt
from tmrl2.checkpoint import (
    CheckpointError,
    DiskFullError,
    load_checkpoint,
    save_checkpoint,
)


def _payload(value: float) -> dict[str, object]:
    return {"actor": {"w": torch.full((4,), value)}, "counters": {"updates": int(value)}}


@pytest.mark.parametrize("code", [errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)])
def test_full_disk_raises_disk_full_and_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    path = tmp_path / "run" / "checkpoint.pt"
    save_checkpoint(path, _payload(1.0))

    def half_then_full(tmp: Path, data: memoryview) -> None:
        with open(tmp, "wb") as f:
            f.write(bytes(data[: len(data) // 2]))
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(ckpt, "_write_durably", half_then_full)
    with pytest.raises(DiskFullError) as info:
        save_checkpoint(path, _payload(2.0))
    message = str(info.value)
    assert str(path) in message and "bytes free" in message and "disk full" in message
    assert isinstance(info.value, CheckpointError) and info.value.free_bytes is not None
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert sorted(p.name for p in path.parent.iterdir()) == ["checkpoint.pt"]  # no partial tmp
    assert load_checkpoint(path)["counters"] == {"updates": 1}


def test_other_write_errors_are_not_reported_as_a_full_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "checkpoint.pt"

    def denied(tmp: Path, data: memoryview) -> None:
        tmp.write_bytes(b"x")
        raise PermissionError(errno.EACCES, "denied")

    monkeypatch.setattr(ckpt, "_write_durably", denied)
    with pytest.raises(PermissionError):
        save_checkpoint(path, _payload(1.0))
    assert list(tmp_path.iterdir()) == []


def test_stale_temp_files_are_removed_by_the_next_save_and_never_loaded(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, _payload(3.0))
    stale = [tmp_path / "checkpoint.pt.tmp", tmp_path / "checkpoint.pt.1234.tmp"]
    for f in stale:
        f.write_bytes(b"torn write of a killed trainer")
    other = tmp_path / "memory.npz.tmp"  # not ours: left alone
    other.write_bytes(b"x")
    assert load_checkpoint(tmp_path)["counters"] == {"updates": 3}  # tmp ignored
    save_checkpoint(path, _payload(4.0))
    assert not any(f.exists() for f in stale) and other.exists()
    assert load_checkpoint(path)["counters"] == {"updates": 4}


def test_save_fsyncs_the_file_before_the_rename_and_then_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync-dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "fsync-file")
        real_fsync(fd)

    def replace(src: object, dst: object) -> None:
        events.append("replace")
        real_replace(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(ckpt.os, "fsync", fsync)
    monkeypatch.setattr(ckpt.os, "replace", replace)
    save_checkpoint(tmp_path / "checkpoint.pt", _payload(5.0))
    if os.name == "nt" or not os.path.isdir("/proc/self/fd"):
        assert events[:2] == ["fsync-file", "replace"]
    else:
        assert events == ["fsync-file", "replace", "fsync-dir"]


def test_corrupt_checkpoint_error_is_one_line_without_a_chain(tmp_path: Path) -> None:
    bad = tmp_path / "checkpoint.pt"
    bad.write_bytes(b"PK\x03\x04 torn zip")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path)
    assert "not a readable checkpoint" in str(info.value)
    assert "\n" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__
    torch.save([1, 2], bad)  # readable, but not a checkpoint
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        load_checkpoint(bad)
