"""Learner throughput on an accelerator: SAC, REDQ and the image CNN with mixed precision off,
bf16 and fp16, and REDQ's batched ensemble against a Python loop over N separate critics.

The prepared check for a session that is lent a GPU (one run, a few minutes):

    python benchmarks/bench_learner_device.py --device cuda

Same setting as ``bench_learner.py`` (tmrl's LIDAR observation, 3-D actions, MLP (256, 256),
batch 256, REDQ N=10 M=2 G=20). Each figure is the median updates/s over rounds; the AMP
lines give their ratio to AMP off, the loop lines the batched ensemble's ratio to the loop.
The loop is the same REDQ learner whose critic is N ordinary ``nn.Sequential`` MLPs called one
after the other (the way tmrl 0.7.1 builds its REDQ ensemble), target subset included.

On a CPU it runs as well: AMP is CUDA-only there (``--amp-on-cpu`` runs the mixed-precision
paths on the CPU anyway, to check the script without a GPU; those timings mean nothing).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping

import numpy as np
import torch
from bench_learner import ACTION_SPACE, OBS_SPACE, image_batch, random_chunk
from timing import print_machine, rate
from torch import nn

from tmrl2.algos import sac as sac_module
from tmrl2.algos.cnn import CNNActorCritic, CNNConfig
from tmrl2.algos.networks import MLPActorCritic, MLPConfig, QEnsemble, mlp
from tmrl2.algos.redq import REDQ, REDQConfig
from tmrl2.algos.sac import SAC, AmpMode, SACConfig
from tmrl2.memory.batch import Batch
from tmrl2.memory.ring import RingMemory, RingMemoryConfig

PRECISIONS: tuple[AmpMode, ...] = ("off", "bf16", "fp16")


class LoopEnsemble(nn.Module):
    """N separate Q networks evaluated one after the other: the anchor of the batched ensemble.

    Same interface as :class:`QEnsemble` (``(obs, action, members) -> (n, B)``); ``members``
    are CPU indices, so choosing the target subset costs no device sync.
    """

    def __init__(self, ensemble: QEnsemble, hidden: tuple[int, ...]) -> None:
        super().__init__()
        self.flatten = ensemble.flatten
        self.n_critics = ensemble.n_critics
        in_dim = ensemble.q.linear_layers[0].weight.shape[1]
        self.members = nn.ModuleList(
            nn.Sequential(*mlp([in_dim, *hidden], "relu"), nn.Linear(hidden[-1], 1))
            for _ in range(self.n_critics)
        )

    def forward(
        self,
        obs: Mapping[str, torch.Tensor],
        action: torch.Tensor,
        members: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = torch.cat([self.flatten(obs), action.to(torch.float32)], dim=-1)
        picked = range(self.n_critics) if members is None else members.tolist()
        return torch.stack([self.members[i](x).squeeze(-1) for i in picked])


class LoopREDQ(REDQ):
    """REDQ over a :class:`LoopEnsemble` (the subset is drawn on the CPU and stays there)."""

    def _target_q(
        self, next_obs: dict[str, torch.Tensor], next_action: torch.Tensor
    ) -> torch.Tensor:
        members = torch.randperm(self._n)[: self._m]
        return self.target_critic(next_obs, next_action, members)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default_device = "cuda" if torch.cuda.is_available() else "cpu"
    parser.add_argument("--device", default=default_device, help="torch device of the learner")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per figure (median)")
    parser.add_argument("--updates", type=int, default=50, help="updates per round")
    parser.add_argument("--hidden", type=int, default=256, help="width of the hidden layers")
    parser.add_argument("--batch", type=int, default=256, help="batch size (MLP learners)")
    parser.add_argument("--image-batch", type=int, default=64, help="batch size (image CNN)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument(
        "--amp-on-cpu", action="store_true", help="run the AMP paths on a CPU (a dry run)"
    )
    args = parser.parse_args()
    print_machine()  # CPU model and flags, ceilings measured now: figures compare across machines
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.amp_on_cpu:
        sac_module.AMP_DEVICE_TYPES = ("cuda", "cpu")
    amp_here = device.type in sac_module.AMP_DEVICE_TYPES
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    hidden = (args.hidden, args.hidden)
    print(
        f"device {device} ({name}), torch {torch.__version__}, batch {args.batch}, hidden "
        f"{hidden}, median of {args.rounds} rounds of {args.updates} updates"
    )
    if not amp_here:
        print("AMP is CUDA-only: on this device every precision runs in float32")

    torch.manual_seed(0)
    memory = RingMemory(
        RingMemoryConfig(capacity=20_000), OBS_SPACE, ACTION_SPACE, device=str(device)
    )
    memory.append(random_chunk(20_000, np.random.default_rng(0)))
    batch = memory.sample(args.batch)

    def model() -> MLPActorCritic:
        return MLPActorCritic(MLPConfig(hidden_sizes=hidden), OBS_SPACE, ACTION_SPACE)

    def measure(update: Callable[[Batch], object], what: Batch) -> float:
        return rate(lambda: update(what), args.updates, args.rounds)

    precisions: tuple[AmpMode, ...] = PRECISIONS if amp_here else ("off",)

    def sac(amp: AmpMode) -> SAC:
        return SAC(SACConfig(batch_size=args.batch, amp=amp), model(), device)

    def redq(amp: AmpMode) -> SAC:
        return REDQ(REDQConfig(batch_size=args.batch, amp=amp), model(), device)

    for label, make in (("SAC updates/s", sac), ("REDQ N=10 M=2 G=20 critic updates/s", redq)):
        base = 0.0
        for amp in precisions:
            figure = measure(make(amp).update, batch)
            base = base or figure
            print(f"{label:38s} amp {amp:4s} {figure:8.1f}  x{figure / base:.2f} vs amp off")

    for amp in precisions:
        cfg = REDQConfig(batch_size=args.batch, amp=amp)
        batched = REDQ(cfg, model(), device)
        looped_model = model()
        looped_model.critic = LoopEnsemble(batched.model.critic, hidden)  # type: ignore[assignment]
        looped = LoopREDQ(cfg, looped_model, device)
        fast, slow = measure(batched.update, batch), measure(looped.update, batch)
        print(
            f"REDQ N=10 batched ensemble, amp {amp:4s} {fast:8.1f} updates/s; Python loop over "
            f"10 critics {slow:8.1f}: x{fast / slow:.2f}"
        )

    obs_space, images = image_batch(args.image_batch, str(device))
    base = 0.0
    for amp in precisions:
        cnn = CNNActorCritic(CNNConfig(), obs_space, ACTION_SPACE)
        algo = SAC(SACConfig(batch_size=args.image_batch, amp=amp), cnn, device)
        figure = measure(algo.update, images)
        base = base or figure
        print(
            f"image CNN + DrQ SAC updates/s (batch {args.image_batch}) amp {amp:4s} "
            f"{figure:8.1f}  x{figure / base:.2f} vs amp off"
        )


if __name__ == "__main__":
    main()
