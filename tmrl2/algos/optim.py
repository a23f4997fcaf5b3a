"""The one place optimizers are built: Adam with torch's fastest kernel for the device."""

from __future__ import annotations

from collections.abc import Iterable

import torch

FUSED_DEVICES = ("cpu", "cuda")
"""Devices where torch's fused Adam kernels exist: about 2x faster than the multi-tensor
(``foreach``) path on CPU (0.41 vs 0.87 ms per step of the default twin critic), and the
default single-tensor path is slower still for small networks."""


def fast_adam(
    params: Iterable[torch.Tensor],
    lr: float,
    *,
    betas: tuple[float, float] = (0.9, 0.999),
    weight_decay: float = 0.0,
    decoupled: bool = False,
) -> torch.optim.Optimizer:
    """Adam (``decoupled``: AdamW) over ``params`` with the fused kernel where the device has
    one, else the multi-tensor one."""
    params = list(params)
    device = params[0].device if params else torch.device("cpu")
    fast = {"fused": True} if device.type in FUSED_DEVICES else {"foreach": True}
    cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    return cls(params, lr=lr, betas=betas, weight_decay=weight_decay, **fast)
