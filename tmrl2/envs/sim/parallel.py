"""The batch's physics and LIDAR on several threads: :class:`~tmrl2.envs.sim.vec.SimBatch`
with ``threads > 1`` (``worker.sim_threads``).

The cars are independent within a step, so numba's ``prange`` splits them across threads and
each car's arithmetic is exactly :func:`~tmrl2.envs.sim.kernels.step_cars_scan_each`'s: the
same numbers as one thread, in less wall clock where cores are free (a worker whose machine
also runs the trainer has none to spare: keep 1 there). The thread count is numba's, per
process (:func:`use_threads`).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from tmrl2.envs.sim.kernels import step_scan_row


def use_threads(threads: int) -> int:
    """Set numba's thread count for this process to ``threads`` (at most what numba was
    started with, ``NUMBA_NUM_THREADS``: the machine's cores by default); the count set."""
    most = int(numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]
    count = max(1, min(int(threads), most))
    numba.set_num_threads(count)
    return count


@njit(cache=True, parallel=True, error_model="numpy")
def step_cars_scan_parallel(
    states: np.ndarray, controls: np.ndarray, durations_s: np.ndarray, params: np.ndarray,
    tk: np.ndarray, contact: np.ndarray, angles: np.ndarray, lookup: np.ndarray,
    range_m: float, ahead: int, behind: int, walls: np.ndarray, history: np.ndarray,
) -> None:  # fmt: skip
    """:func:`~tmrl2.envs.sim.kernels.step_cars_scan_each`, the cars split across threads."""
    for i in prange(states.shape[0]):
        scratch = np.empty((3, angles.shape[0]))  # per car: the threads share nothing
        c = controls[i]
        contact[i] = step_scan_row(
            states[i], c[0], c[1], c[2], durations_s[i], params[i], tk, angles, lookup,
            range_m, ahead, behind, walls, history[i], scratch,
        )  # fmt: skip
