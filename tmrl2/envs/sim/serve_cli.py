"""Sub-commands added to ``tmrl2`` (see ``tmrl2.cli._EXTRA_COMMANDS``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def add_commands(sub: Any) -> dict[str, Callable[[argparse.Namespace], int]]:
    """Add this module's sub-commands to ``sub`` and return their handlers."""
    return {}
