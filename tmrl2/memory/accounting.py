"""Memory accounting: will the replay memory fit in this machine's RAM?

The storage arrays are allocated with ``np.zeros``, which maps pages lazily: an oversized
capacity would not fail at start-up but hours later, when the memory fills and the OS kills the
trainer. :func:`check_fits` makes it fail at start-up instead, naming the key to change.
Available memory comes from ``/proc/meminfo`` (``MemAvailable``: free plus reclaimable cache)
on Linux, ``os.sysconf`` on other POSIX systems; where neither exists (Windows), the check is
skipped. No dependency.
"""

from __future__ import annotations

import os
from pathlib import Path

MEMINFO = Path("/proc/meminfo")


def available_ram_bytes(meminfo: Path = MEMINFO) -> int | None:
    """Bytes of RAM that a new allocation can use now, or ``None`` when unknown."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # the kernel writes kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def format_bytes(n: float) -> str:
    """``n`` bytes in a human unit (``1.5 GiB``)."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


def check_fits(
    bytes_per_transition: int,
    capacity: int,
    fixed_bytes: int = 0,
    available: int | None = None,
    key: str = "memory.capacity",
) -> None:
    """Raise :class:`MemoryError` when ``capacity`` transitions cannot fit in RAM.

    Args:
        bytes_per_transition: storage bytes of one transition.
        capacity: configured number of transitions.
        fixed_bytes: storage that does not scale with the capacity (trees, tails).
        available: RAM that may be used; ``None`` reads it from the OS (no check if unknown).
        key: config key named in the error.
    """
    if available is None:
        available = available_ram_bytes()
    if available is None:
        return
    needed = bytes_per_transition * capacity + fixed_bytes
    if needed <= available:
        return
    fitting = max(0, (available - fixed_bytes) // max(1, bytes_per_transition))
    raise MemoryError(
        f"the replay memory needs {format_bytes(needed)} ({capacity} transitions x "
        f"{bytes_per_transition} bytes) but only {format_bytes(available)} of RAM is available; "
        f"lower {key} to at most {fitting}, or store image/LIDAR histories once per frame "
        "(memory.history_keys)"
    )
