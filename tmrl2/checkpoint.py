"""Checkpoints: state_dicts + counters + resolved config + schema version, written atomically.

The file is written to a temporary name in the same folder and renamed over the old one, so a
crash mid-write never leaves a torn checkpoint. Loading uses ``torch.load(weights_only=True)``:
only tensors and plain containers, never arbitrary pickled objects.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or is of another schema."""


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Atomically write ``payload`` (adds the schema version)."""
    import torch  # here, not at import: the CLI imports this module for its error type

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"schema": SCHEMA_VERSION, **payload}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint file or the one inside a run folder."""
    import torch

    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {str(path)!r}")
    try:
        payload: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types on a bad file
        raise CheckpointError(f"{path}: not a readable checkpoint ({exc})") from exc
    if payload.get("schema") != SCHEMA_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint schema {payload.get('schema')!r}, this version reads "
            f"{SCHEMA_VERSION}"
        )
    return payload
