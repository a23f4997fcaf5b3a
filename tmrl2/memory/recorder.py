"""Trajectories on disk: an asynchronous HDF5 writer and a reader that refills a memory.

:class:`TrajectoryWriter` takes the same chunks as the replay memory (``obs/<key>``,
``next_obs/<key>``, ``action``, ``reward``, ``terminated``, ``truncated``) and appends them to
one resizable HDF5 dataset per key on a background thread, so the trainer's loop only pays for
a queue put. Each row also records its ``source`` (the worker that sent it), so that episodes
of interleaved workers can be told apart; an episode ends at a row whose ``terminated`` or
``truncated`` is set. :meth:`TrajectoryWriter.close` drains the queue, so a clean stop loses
nothing; the file is flushed every ``flush_every_s``, so a crash loses at most that much.

:func:`read_chunks` yields the file back as chunks, one per run of consecutive rows of one
source, and :func:`load_into` appends them into a memory (offline pre-training,
demonstrations). h5py is imported when a writer or reader is made, not at import time.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

GROUP = "transitions"
SOURCE = "source"
FORMAT = "tmrl2-trajectories"
VERSION = 1


class TrajectoryWriter:
    """Appends chunks of transitions to an HDF5 file on a background thread."""

    def __init__(
        self,
        path: str | Path,
        max_pending_bytes: int = 256 << 20,
        compression: str | None = None,
        flush_every_s: float = 5.0,
    ) -> None:
        """Args:
        path: the ``.h5`` file; created, or appended to when it exists.
        max_pending_bytes: backlog after which :meth:`append` waits for the disk.
        compression: an h5py filter for the datasets (``"lzf"``, ``"gzip"``) or ``None``.
        flush_every_s: longest time written rows stay in HDF5's buffers.
        """
        import h5py

        self.path = Path(path)
        self._file = h5py.File(self.path, "a")
        self._file.attrs["format"] = FORMAT
        self._file.attrs["version"] = VERSION
        self._compression = compression
        self._flush_every_s = flush_every_s
        self._queue: queue.Queue[tuple[dict[str, np.ndarray], int] | None] = queue.Queue()
        self._pending = 0
        self._room = threading.Condition()
        self._max_pending = max_pending_bytes
        self._error: BaseException | None = None
        group = self._file.get(GROUP)
        self.rows_written = int(group[SOURCE].shape[0]) if group and SOURCE in group else 0
        """Rows in the file (in HDF5's buffers at least)."""
        self._thread = threading.Thread(target=self._run, name="trajectory-writer", daemon=True)
        self._thread.start()
        atexit.register(self.close)  # a clean interpreter exit drains the queue too

    def append(self, chunk: Mapping[str, np.ndarray], source: int = 0) -> None:
        """Queue a chunk (its arrays are kept, not copied: do not modify them afterwards).

        Raises:
            RuntimeError: when the writer thread failed (the cause is chained) or is closed.
        """
        self._raise_if_failed()
        if not self._thread.is_alive():
            raise RuntimeError(f"trajectory writer of {self.path} is closed")
        arrays = {key: np.asarray(value) for key, value in chunk.items()}
        size = sum(arr.nbytes for arr in arrays.values())
        with self._room:
            while self._pending > self._max_pending and self._error is None:
                self._room.wait(timeout=1.0)
            self._pending += size
        self._queue.put((arrays, source))

    def close(self) -> None:
        """Write everything queued, then close the file (idempotent)."""
        atexit.unregister(self.close)
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        if self._file.id.valid:
            self._file.close()
        self._raise_if_failed()

    def __enter__(self) -> TrajectoryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"trajectory writer of {self.path} failed") from self._error

    def _run(self) -> None:
        last_flush = time.monotonic()
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    break
                arrays, source = item
                self._write(arrays, source)
                with self._room:
                    self._pending -= sum(arr.nbytes for arr in arrays.values())
                    self._room.notify_all()
                if time.monotonic() - last_flush >= self._flush_every_s:
                    self._file.flush()
                    last_flush = time.monotonic()
            self._file.flush()
        except BaseException as error:  # reported to the caller by append/close
            log.exception("trajectory writer of %s failed", self.path)
            self._error = error
            with self._room:
                self._room.notify_all()

    def _write(self, arrays: Mapping[str, np.ndarray], source: int) -> None:
        n = len(arrays["reward"])
        if n == 0:
            return
        group = self._file.require_group(GROUP)
        columns = {**arrays, SOURCE: np.full(n, source, dtype=np.int32)}
        for key, arr in columns.items():
            if key not in group:
                group.create_dataset(
                    key,
                    shape=(0, *arr.shape[1:]),
                    maxshape=(None, *arr.shape[1:]),
                    dtype=arr.dtype,
                    chunks=(max(1, min(1024, (1 << 20) // max(1, arr[0].nbytes))), *arr.shape[1:]),
                    compression=self._compression,
                )
            dataset = group[key]
            if dataset.shape[0] != self.rows_written:
                raise ValueError(
                    f"dataset {key!r} has {dataset.shape[0]} rows, expected {self.rows_written}"
                )
            dataset.resize(self.rows_written + n, axis=0)
            dataset[self.rows_written :] = arr
        self.rows_written += n


def read_chunks(path: str | Path, max_rows: int = 4096) -> Iterator[dict[str, np.ndarray]]:
    """Chunks of a file written by :class:`TrajectoryWriter`, in file order: each holds
    consecutive rows of one source (at most ``max_rows``), without the ``source`` column.

    Raises:
        ValueError: when the file is not a trajectory file.
    """
    import h5py

    with h5py.File(path, "r") as file:
        if file.attrs.get("format") != FORMAT:
            raise ValueError(f"{path} is not a {FORMAT} file")
        if GROUP not in file:
            return
        group = file[GROUP]
        keys = [key for key in _dataset_keys(group) if key != SOURCE]
        source = group[SOURCE][:]
        starts = np.flatnonzero(np.diff(source, prepend=np.int64(source[0]) - 1))
        bounds = [*starts.tolist(), len(source)]
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            for start in range(lo, hi, max_rows):
                stop = min(hi, start + max_rows)
                yield {key: group[key][start:stop] for key in keys}


def load_into(memory: Any, path: str | Path) -> int:
    """Append every transition of a trajectory file to ``memory``; return the rows loaded."""
    rows = 0
    for chunk in read_chunks(path):
        memory.append(chunk)
        rows += len(chunk["reward"])
    return rows


def _dataset_keys(group: Any) -> list[str]:
    import h5py

    keys: list[str] = []
    group.visititems(lambda name, obj: keys.append(name) if isinstance(obj, h5py.Dataset) else None)
    return sorted(keys)
