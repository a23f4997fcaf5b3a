"""The trainer's publish schedule: every N updates OR T seconds, never the same weights twice.

``Trainer._publish_due`` reads only ``self.cfg``, so it is tested on a stand-in object
rather than a full trainer (env, model, memory).
"""

from __future__ import annotations

from types import SimpleNamespace

from tmrl2.roles.trainer import Trainer


def due(new_updates: int, since_s: float, every_updates: int = 200, every_s: float = 0.0) -> bool:
    cfg = SimpleNamespace(publish_every_updates=every_updates, publish_every_s=every_s)
    return Trainer._publish_due(SimpleNamespace(cfg=cfg), new_updates, since_s)  # type: ignore[arg-type]


def test_every_n_updates() -> None:
    assert not due(199, 1e6)
    assert due(200, 0.0)


def test_every_t_seconds_when_set() -> None:
    assert not due(5, 0.9, every_s=1.0)
    assert due(5, 1.0, every_s=1.0)


def test_never_republishes_unchanged_weights() -> None:
    assert not due(0, 1e6, every_s=1.0)


def test_seconds_off_by_default() -> None:
    from tmrl2.config.schema import TrainerConfig

    assert TrainerConfig().publish_every_s == 0.0
    cfg = SimpleNamespace(publish_every_updates=200, publish_every_s=0.0)
    assert not Trainer._publish_due(SimpleNamespace(cfg=cfg), 5, 1e6)  # type: ignore[arg-type]
