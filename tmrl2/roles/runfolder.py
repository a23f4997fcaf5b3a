"""The trainer's run folder: its checkpoint (and replay memory) written durably, read back on
resume, and a full disk survived.

A full disk (``DiskFullError`` from :func:`~tmrl2.checkpoint.save_checkpoint`, ``ENOSPC`` or
``EDQUOT`` from the memory's save) must not end a run that is learning well: the previous
checkpoint is intact, the error is logged at most once per :data:`DISK_FULL_LOG_S`, and the
next checkpoint period tries again once space was freed. Other errors are not hidden.
"""

from __future__ import annotations

import errno
import logging
import math
import time
from pathlib import Path
from typing import Any

from tmrl2.checkpoint import CHECKPOINT_NAME, DiskFullError, load_checkpoint, save_checkpoint
from tmrl2.contracts import ReplayMemory
from tmrl2.roles.pacing import Clock

log = logging.getLogger(__name__)

MEMORY_DIR = "memory"
"""Folder of the saved replay memory inside the run folder."""
DISK_FULL_LOG_S = 60.0
"""A full disk is logged at most this often (the trainer retries every checkpoint period)."""


class RunFolder:
    """Checkpoint (+ memory) of one run folder (module docstring)."""

    def __init__(self, path: Path, save_memory: bool, clock: Clock = time.monotonic) -> None:
        self.path = path
        self.save_memory = save_memory
        self.clock = clock
        self._disk_full_logged = -math.inf

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT_NAME

    def save(self, payload: dict[str, Any], memory: ReplayMemory) -> bool:
        """Write the checkpoint (and the memory); False when the disk was full."""
        try:
            save_checkpoint(self.checkpoint, payload)
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
