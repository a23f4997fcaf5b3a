"""Learner throughput: SAC updates/s, training steps/s (sample + update), memory samples/s.

Setting: the default simulator observation space (LIDAR 19 + speed + 2 previous actions),
3-D actions, MLP (256, 256), batch 256, a ring memory holding 100k random transitions. Each
figure is the median over rounds; it is printed with its ratio to an anchor:

- SAC update: a CleanRL-style update (two separate Q networks evaluated one after the other,
  default Adam), same sizes and hyperparameters;
- memory sampling: a list of per-transition dicts (the tmrl 0.x layout) stacked per batch.

Run: ``python benchmarks/bench_learner.py`` (about 40 s on a 2-core machine).
"""

from __future__ import annotations

import argparse
import copy
import random
from collections.abc import Callable

import numpy as np
import torch
from gymnasium import spaces
from timing import rate
from torch import nn

from tmrl2.algos.networks import MLPActorCritic, MLPConfig, mlp
from tmrl2.algos.sac import SAC, SACConfig
from tmrl2.memory.batch import Batch, chunk_spec
from tmrl2.memory.ring import RingMemory, RingMemoryConfig

OBS_SPACE = spaces.Dict(
    lidar=spaces.Box(0, 1, (1, 19)),
    speed=spaces.Box(0, np.inf, (1,)),
    prev_actions=spaces.Box(-1, 1, (2, 3)),
)
ACTION_SPACE = spaces.Box(-1, 1, (3,))


def random_chunk(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``n`` random transitions following the chunk contract."""
    chunk: dict[str, np.ndarray] = {}
    for key, (shape, dtype) in chunk_spec(OBS_SPACE, ACTION_SPACE).items():
        if dtype == np.bool_:
            chunk[key] = rng.random(n) < 0.01
        else:
            chunk[key] = rng.random((n, *shape), dtype=np.float32)
    return chunk


class CleanRLStyleSAC:
    """The anchor: a textbook SAC update with two separate Q networks and default Adam."""

    def __init__(self, model: MLPActorCritic, hidden: tuple[int, ...], gamma: float = 0.99):
        in_dim = model.critic.flatten.dim + 3
        self.actor = model.actor
        self.qs = [
            nn.Sequential(*mlp([in_dim, *hidden], "relu"), nn.Linear(hidden[-1], 1))
            for _ in range(2)
        ]
        self.targets = [copy.deepcopy(q).requires_grad_(False) for q in self.qs]
        self.q_opt = torch.optim.Adam([p for q in self.qs for p in q.parameters()], lr=3e-4)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=3e-4)
        self.log_alpha = torch.zeros((), requires_grad=True)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=3e-4)
        self.gamma, self.flatten = gamma, model.critic.flatten

    def q(
        self, nets: list[nn.Sequential], obs: dict[str, torch.Tensor], act: torch.Tensor
    ) -> list[torch.Tensor]:
        x = torch.cat([self.flatten(obs), act], dim=-1)
        return [net(x).squeeze(-1) for net in nets]

    def update(self, b: Batch) -> None:
        alpha = self.log_alpha.exp().detach()
        with torch.no_grad():
            next_a, next_logp = self.actor(b.next_obs)
            q1_t, q2_t = self.q(self.targets, b.next_obs, next_a)
            target = b.reward + self.gamma * (1 - b.terminated) * (
                torch.min(q1_t, q2_t) - alpha * next_logp
            )
        q1, q2 = self.q(self.qs, b.obs, b.action)
        loss_q = ((q1 - target) ** 2).mean() + ((q2 - target) ** 2).mean()
        self.q_opt.zero_grad()
        loss_q.backward()
        self.q_opt.step()
        action, logp = self.actor(b.obs)
        q1_pi, q2_pi = self.q(self.qs, b.obs, action)
        loss_pi = (alpha * logp - torch.min(q1_pi, q2_pi)).mean()
        self.actor_opt.zero_grad()
        loss_pi.backward()
        self.actor_opt.step()
        loss_alpha = -(self.log_alpha * (logp.detach() - 3.0)).mean()
        self.alpha_opt.zero_grad()
        loss_alpha.backward()
        self.alpha_opt.step()
        with torch.no_grad():
            for q, t in zip(self.qs, self.targets, strict=True):
                for p, tp in zip(q.parameters(), t.parameters(), strict=True):
                    tp.mul_(0.995).add_(0.005 * p)
        self.last_losses = (loss_q.item(), loss_pi.item())  # the usual per-step logging


def list_memory_sampler(chunk: dict[str, np.ndarray], batch_size: int) -> Callable[[], object]:
    """The anchor of sampling: transitions kept as a list of dicts, stacked per batch."""
    rows = [{key: arr[i] for key, arr in chunk.items()} for i in range(len(chunk["reward"]))]
    keys = list(chunk)

    def sample() -> dict[str, torch.Tensor]:
        picked = random.choices(rows, k=batch_size)
        return {key: torch.from_numpy(np.stack([row[key] for row in picked])) for key in keys}

    return sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--threads", type=int, nargs="+", default=[1, 2], help="torch threads to try"
    )
    parser.add_argument("--rounds", type=int, default=5, help="rounds per figure (median taken)")
    parser.add_argument("--updates", type=int, default=30, help="updates per round")
    parser.add_argument("--size", type=int, default=100_000, help="transitions in the memory")
    parser.add_argument("--device", default="cpu", help="torch device of the learner")
    args = parser.parse_args()

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    chunk = random_chunk(args.size, rng)
    memory = RingMemory(
        RingMemoryConfig(capacity=args.size), OBS_SPACE, ACTION_SPACE, device=args.device
    )
    memory.append(chunk)
    config = SACConfig(batch_size=256)  # tmrl's batch, for the side-by-side figures
    hidden = (256, 256)
    sac = SAC(
        config, MLPActorCritic(MLPConfig(hidden_sizes=hidden), OBS_SPACE, ACTION_SPACE), args.device
    )
    anchor = CleanRLStyleSAC(
        MLPActorCritic(MLPConfig(hidden_sizes=hidden), OBS_SPACE, ACTION_SPACE), hidden
    )
    list_sample = list_memory_sampler({k: v[:20_000] for k, v in chunk.items()}, config.batch_size)
    batch = memory.sample(config.batch_size)
    cpu_batch = batch if args.device == "cpu" else None

    print(
        f"device {args.device}, batch {config.batch_size}, hidden {hidden}, memory {len(memory):,} "
        f"transitions ({memory.bytes_per_transition} B each), median of {args.rounds} rounds"
    )
    for threads in args.threads:
        torch.set_num_threads(threads)
        samples = rate(lambda: memory.sample(config.batch_size), 20 * args.updates, args.rounds)
        list_samples = rate(list_sample, 2 * args.updates, args.rounds)
        updates = rate(lambda: sac.update(batch), args.updates, args.rounds)
        steps = rate(
            lambda: sac.update(memory.sample(config.batch_size)), args.updates, args.rounds
        )
        line = f"threads {threads}: SAC updates/s {updates:7.1f}"
        if cpu_batch is not None:
            anchor_updates = rate(lambda: anchor.update(cpu_batch), args.updates, args.rounds)
            line += f" (x{updates / anchor_updates:.2f} vs CleanRL-style {anchor_updates:.1f})"
        print(line)
        print(f"threads {threads}: training steps/s (sample + update) {steps:7.1f}")
        print(
            f"threads {threads}: memory sample batches/s {samples:9.0f} "
            f"(x{samples / list_samples:.1f} vs list of dicts {list_samples:.0f})"
        )


if __name__ == "__main__":
    main()
