"""Checkpoints: state_dicts + counters + resolved config + schema version, written safely.

A checkpoint must survive the ways a long run ends badly, so writing it is careful:

- the payload is serialised in memory first, then written to ``checkpoint.pt.tmp`` in the same
  folder, flushed and ``fsync``-ed, renamed over the old file (``os.replace``, atomic), and the
  folder is ``fsync``-ed so that the rename itself survives a power cut (POSIX only);
- a temp file left by a writer that was killed mid-write is removed when the next save starts
  (it holds disk space the new write may need) and is never read by :func:`load_checkpoint`;
- a full disk (``ENOSPC``/``EDQUOT``) raises :class:`DiskFullError` naming the path and the free
  bytes, after removing the partial temp file: the previous checkpoint stays intact, and the
  trainer can log it and keep training.

Loading uses ``torch.load(weights_only=True)``: only tensors and plain containers, never
arbitrary pickled objects. The config inside is plain data; whether the import paths it may name
are imported is decided by whoever validates it (see ``config.registry.trusted_imports``).
"""

from __future__ import annotations

import errno
import io
import os
import shutil
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"
TMP_SUFFIX = ".tmp"
_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or written, or is of another schema."""


class DiskFullError(CheckpointError):
    """No space (or quota) left to write a checkpoint; the previous one is intact."""

    def __init__(self, path: Path, free_bytes: int | None) -> None:
        free = "unknown" if free_bytes is None else f"{free_bytes:,}"
        super().__init__(
            f"cannot write checkpoint {str(path)!r}: disk full ({free} bytes free in "
            f"{str(path.parent)!r}); the previous checkpoint is kept. Free some space: the next "
            "checkpoint period retries"
        )
        self.path = path
        self.free_bytes = free_bytes


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` (adds the schema version) durably and atomically.

    Raises:
        DiskFullError: the disk or quota is full; nothing was changed on disk.
    """
    import torch  # here, not at import: the CLI imports this module for its error type

    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    buffer = io.BytesIO()  # serialise first: a disk error then is a plain OSError, not torch's
    torch.save({"schema": SCHEMA_VERSION, **payload}, buffer)
    tmp = path.with_name(path.name + TMP_SUFFIX)
    try:
        _write_durably(tmp, buffer.getbuffer())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno in _DISK_FULL:
            raise DiskFullError(path, _free_bytes(path.parent)) from None
        raise
    _fsync_dir(path.parent)


def _write_durably(tmp: Path, data: memoryview) -> None:
    """Write ``data`` to ``tmp`` and force it to the disk (tests replace this to fill the disk)."""
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable; Windows cannot open a folder for this (skipped)."""
    if os.name == "nt":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems (e.g. certain network mounts) refuse fsync on folders
    finally:
        os.close(fd)


def _free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def remove_stale_temps(path: Path) -> list[Path]:
    """Remove temp files a killed writer of ``path`` left behind; returns what was removed."""
    removed = []
    for stale in path.parent.glob(f"{path.name}*{TMP_SUFFIX}"):
        try:
            stale.unlink()
        except OSError:
            continue
        removed.append(stale)
    return removed


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint file or the one inside a run folder (temp files are never read)."""
    import torch

    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {str(path)!r}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types on a bad file
        # the chain adds nothing the message lacks: the reason is in the message
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint ({reason})") from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: not a checkpoint (holds a {type(payload).__name__})")
    if payload.get("schema") != SCHEMA_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint schema {payload.get('schema')!r}, this version reads "
            f"{SCHEMA_VERSION}"
        )
    return payload
