"""Moved: recording a reference lap in the simulator is
:func:`tmrl2.envs.sim.record.record_sim_reference` (rewards never import an env).

This name is kept, resolved lazily, only until ``tmrl2/cli.py`` imports the new path; importing
this module imports nothing from :mod:`tmrl2.envs`.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "record_sim_reference":
        from tmrl2.envs.sim.record import record_sim_reference

        return record_sim_reference
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
