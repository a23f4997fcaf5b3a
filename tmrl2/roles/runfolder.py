"""The trainer's run folder: its checkpoint (and replay memory) written durably, read back on
resume, and a full disk survived.

A full disk (``DiskFullError`` from :func:`~tmrl2.checkpoint.save_checkpoint`, ``ENOSPC`` or
``EDQUOT`` from the memory's save) must not end a run that is learning well: the previous
checkpoint is intact, the error is logged at most once per :data:`DISK_FULL_LOG_S`, and the
next checkpoint period tries again once space was freed. Other errors are not hidden.

History: each checkpoint is also kept as ``checkpoints/ckpt-<updates>.pt`` (a hard link of the
file just written where the filesystem allows, else a copy), and only the last
``run.keep_checkpoints`` stay. ``best.pt`` (written by the evaluator, :mod:`.evaluator`) lies
beside ``checkpoint.pt``, outside that folder: pruning never touches it. Resume reads
``checkpoint.pt``.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

from tmrl2.checkpoint import (
    CHECKPOINT_NAME,
    TMP_SUFFIX,
    DiskFullError,
    _fsync_dir,
    load_checkpoint,
    save_checkpoint,
)
from tmrl2.contracts import ReplayMemory
from tmrl2.roles.pacing import Clock

log = logging.getLogger(__name__)

MEMORY_DIR = "memory"
"""Folder of the saved replay memory inside the run folder."""
DISK_FULL_LOG_S = 60.0
"""A full disk is logged at most this often (the trainer retries every checkpoint period)."""
HISTORY_DIR = "checkpoints"
"""Folder of the checkpoint history inside the run folder."""
HISTORY_RE = re.compile(r"ckpt-(\d+)\.pt")
"""Name of one history checkpoint: its update count."""
DEFAULT_KEEP = 3
"""``run.keep_checkpoints``' default, for a payload whose config does not say."""


def publish_copy(src: Path, dst: Path) -> None:
    """Make ``dst`` a copy of the finished file ``src``, atomically: a hard link (no bytes
    copied) where the filesystem allows, else a copy; through a temp name and a rename, so that
    a reader sees the old ``dst`` or the whole new one. ``src`` must never be written in place
    (checkpoints are replaced by renames), or the link would change with it.

    Raises:
        OSError: ``src`` is missing, or the copy failed (a full disk); ``dst`` is unchanged.
    """
    tmp = dst.with_name(dst.name + TMP_SUFFIX)
    tmp.unlink(missing_ok=True)
    try:
        try:
            os.link(src, tmp)
        except OSError:
            if not src.is_file():
                raise
            shutil.copyfile(src, tmp)  # FAT, some network mounts: no hard links
        os.replace(tmp, dst)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(dst.parent)


def history(folder: Path) -> list[tuple[int, Path]]:
    """The history checkpoints in ``folder`` (``ckpt-<updates>.pt``), oldest first."""
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = HISTORY_RE.fullmatch(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


class RunFolder:
    """Checkpoint (+ memory) of one run folder (module docstring)."""

    def __init__(
        self,
        path: Path,
        save_memory: bool,
        clock: Clock = time.monotonic,
        keep_checkpoints: int | None = None,
    ) -> None:
        self.path = path
        self.save_memory = save_memory
        self.clock = clock
        self.keep_checkpoints = keep_checkpoints
        """History length (``run.keep_checkpoints``); None: the one in each payload's config."""
        self._disk_full_logged = self._history_logged = -math.inf

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT_NAME

    @property
    def history_dir(self) -> Path:
        return self.path / HISTORY_DIR

    def save(self, payload: dict[str, Any], memory: ReplayMemory) -> bool:
        """Write the checkpoint (and the memory), keep it in the history and prune that; False
        when the disk was full."""
        try:
            save_checkpoint(self.checkpoint, payload)
            self._keep(payload)
            if self.save_memory:
                memory.save(self.path / MEMORY_DIR)
        except DiskFullError as exc:
            self._disk_full(str(exc))
            return False
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            self._disk_full(f"{exc.filename or self.path}: {exc.strerror}")
            return False
        return True

    def keep(self, payload: dict[str, Any]) -> int:
        """How many history checkpoints to keep (the payload's ``run.keep_checkpoints`` unless
        the folder was given one)."""
        if self.keep_checkpoints is not None:
            return self.keep_checkpoints
        run = (payload.get("config") or {}).get("run") or {}
        value = run.get("keep_checkpoints", DEFAULT_KEEP) if isinstance(run, dict) else None
        return value if isinstance(value, int) and value >= 0 else DEFAULT_KEEP

    def _keep(self, payload: dict[str, Any]) -> None:
        """``checkpoint.pt`` as ``checkpoints/ckpt-<updates>.pt``; the oldest beyond the
        history length deleted. A history that cannot be written (a full disk without hard
        links) is logged at most once per :data:`DISK_FULL_LOG_S`: the checkpoint is safe."""
        keep = self.keep(payload)
        counters = payload.get("counters") or {}
        updates = int(counters.get("updates", 0)) if isinstance(counters, dict) else 0
        folder = self.history_dir
        if keep > 0:
            try:
                folder.mkdir(exist_ok=True)
                publish_copy(self.checkpoint, folder / f"ckpt-{updates}.pt")
            except OSError as exc:
                now = self.clock()
                if now - self._history_logged >= DISK_FULL_LOG_S:
                    self._history_logged = now
                    log.warning("checkpoint history not written (%s); training continues", exc)
        kept = history(folder)
        for _, old in kept[: max(0, len(kept) - keep)]:
            try:
                old.unlink()
            except OSError as exc:
                log.warning("cannot delete old checkpoint %s: %s", old, exc)

    def load(self, memory: ReplayMemory) -> dict[str, Any] | None:
        """The checkpoint's payload (None: there is none); the saved memory goes back into
        ``memory`` when ``save_memory``."""
        if not self.checkpoint.is_file():
            return None
        payload = load_checkpoint(self.checkpoint)
        if self.save_memory and (self.path / MEMORY_DIR).is_dir():
            memory.load(self.path / MEMORY_DIR)
            log.info("reloaded %d transitions into the replay memory", len(memory))
        return payload

    def _disk_full(self, detail: str) -> None:
        now = self.clock()
        if now - self._disk_full_logged >= DISK_FULL_LOG_S:
            self._disk_full_logged = now
            log.error(
                "disk full: checkpoint not written (%s); training continues, retrying every "
                "checkpoint period",
                detail,
            )
