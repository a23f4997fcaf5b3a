"""Learner throughput, side by side with tmrl 0.7.1's agents: SAC updates/s and training
steps/s (sample + update), REDQ (N=10, M=2, G=20) critic updates/s, the image CNN's updates/s.

Setting: tmrl's LIDAR observation (4 x 19 LIDAR history + speed + 2 previous actions, 83
inputs), 3-D actions, MLP (256, 256) (tmrl's 265k-parameter actor-critic), batch 256, a memory
of random transitions. Each figure is the median over rounds, printed with its ratio to:

- tmrl 0.7.1 (``SpinupSacAgent``, ``REDQSACAgent``, ``MemoryTMLidar``), run in its own virtual
  environment (skipped with a message where it is not installed), its interpreter kept up so
  that its rounds alternate with ours: the ratio is the median of the per-round ratios, so the
  machine's drift (up to 25 % within minutes on a shared VM) hits both sides alike;
- a CleanRL-style SAC update (two separate Q networks, default Adam), same sizes;
- REDQ's arithmetic ceiling: FLOPs per critic update against the measured matmul rate.

Run: ``python benchmarks/bench_learner.py`` (about 3 minutes on a 2-core machine).
"""

from __future__ import annotations

import argparse
import copy
import random
import statistics
from collections.abc import Callable

import numpy as np
import torch
from gymnasium import spaces
from timing import print_machine, rate
from tmrl_baseline import TmrlProcess, start_tmrl
from torch import nn

from tmrl2.algos.cnn import CNNActorCritic, CNNConfig
from tmrl2.algos.networks import MLPActorCritic, MLPConfig, mlp
from tmrl2.algos.redq import REDQ, REDQConfig
from tmrl2.algos.sac import SAC, SACConfig
from tmrl2.memory.batch import Batch, chunk_spec
from tmrl2.memory.ring import RingMemory, RingMemoryConfig

OBS_SPACE = spaces.Dict(
    lidar=spaces.Box(0, 1, (4, 19)),
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


TMRL_SCRIPT = r"""
import json, statistics, sys, time
import numpy as np, torch
from gymnasium import spaces
from tmrl.custom.custom_algorithms import SpinupSacAgent, REDQSACAgent
from tmrl.custom.custom_memories import MemoryTMLidar, get_local_buffer_sample_lidar
args = json.loads(sys.argv[1])
rng = np.random.default_rng(0)
class Buffer:
    stat_train_return = stat_test_return = 0.0
    stat_train_steps = stat_test_steps = 0
    def __init__(self, memory): self.memory = memory
    def __len__(self): return len(self.memory)
def samples(n):
    out = []
    for t in range(n):
        act = rng.random(3, dtype=np.float32)
        obs = (rng.random(1, dtype=np.float32), rng.random(19, dtype=np.float32), act, act)
        out.append(get_local_buffer_sample_lidar(act, obs, 0.5, (t + 1) % 500 == 0, False, {}))
    return out
mem = MemoryTMLidar(memory_size=args["size"], batch_size=256, imgs_obs=4, act_buf_len=2,
                    device="cpu")
mem.append(Buffer(samples(args["size"])))
obs_space = spaces.Tuple((spaces.Box(0, 1000, (1,)), spaces.Box(0, np.inf, (4, 19)),
                          spaces.Box(-1, 1, (3,)), spaces.Box(-1, 1, (3,))))
act_space = spaces.Box(-1, 1, (3,))
def one_round(fn, calls):
    fn()  # warm-up
    t = time.perf_counter()
    for _ in range(calls):
        fn()
    return calls / (time.perf_counter() - t)
batch = mem.sample()
sac = SpinupSacAgent(obs_space, act_space, device="cpu")
# tmrl's REDQ crashes with a learned temperature and G > 1 (alpha_t is undefined between
# policy updates): its shipped REDQ config uses a fixed alpha, as here
redq = REDQSACAgent(obs_space, act_space, device="cpu", n=10, m=2,
                    q_updates_per_policy_update=20, learn_entropy_coef=False, alpha=0.01)
figures = {
    "sac_updates": lambda: sac.train(batch),
    "sac_steps": lambda: sac.train(mem.sample()),
    "redq_updates": lambda: redq.train(batch),
}
print("READY " + json.dumps({"params": sum(p.numel() for p in sac.model.parameters())}), flush=True)
for line in sys.stdin:
    req = json.loads(line)
    torch.set_num_threads(req["threads"])
    rate = one_round(figures[req["figure"]], req["calls"])
    print("RESULT " + json.dumps({"rate": rate}), flush=True)
"""


def matmul_gflops(rounds: int) -> float:
    """Measured float32 matmul rate of this process (256 x 256 by 256 x 256 blocks)."""
    a, b = torch.randn(256, 256), torch.randn(256, 256)
    flops = 2 * 256**3
    return rate(lambda: torch.mm(a, b), 200, rounds) * flops / 1e9


def sac_flops(batch: int, hidden: int, in_dim: int = 86) -> float:
    """FLOPs of one SAC update (twin critics, actor step every update, critic frozen in the
    actor's backward: only input gradients flow through it)."""
    q_mac = batch * (in_dim * hidden + hidden * hidden + hidden)  # one Q function, forward
    actor_mac = batch * ((in_dim - 3) * hidden + hidden * hidden + hidden * 6)
    critic = 2 * q_mac * 3  # forward + backward (input and weight gradients)
    target = 2 * q_mac + actor_mac  # both target critics and the actor on s'
    policy = 2 * q_mac * 2 + actor_mac * 3  # critics forward + input gradients; actor fwd+bwd
    return 2.0 * (critic + target + policy)


def redq_flops(batch: int, hidden: int, n: int, m: int, g: int, in_dim: int = 86) -> float:
    """FLOPs of one REDQ critic update (the actor's step amortized over ``g``)."""
    q_mac = batch * (in_dim * hidden + hidden * hidden + hidden)  # one Q function, forward
    actor_mac = batch * ((in_dim - 3) * hidden + hidden * hidden + hidden * 6)
    critic = n * q_mac * 3  # forward + backward (two matmuls per layer)
    target = m * q_mac + actor_mac  # M target critics and the actor on s'
    policy = (n * q_mac * 3 + actor_mac * 3) / g  # actor step through all N critics
    return 2.0 * (critic + target + policy)


def image_batch(batch_size: int, device: str = "cpu") -> tuple[spaces.Dict, Batch]:
    """A random batch of tmrl's image observation (4 x 64 x 64 grey, speed, previous actions)."""
    obs_space = spaces.Dict(
        image=spaces.Box(0, 255, (4, 64, 64), np.uint8),
        speed=spaces.Box(0, 1, (1,), np.float32),
        prev_actions=spaces.Box(-1, 1, (2, 3), np.float32),
    )
    gen = torch.Generator().manual_seed(0)

    def part() -> dict[str, torch.Tensor]:
        return {
            "image": torch.randint(0, 256, (batch_size, 4, 64, 64), generator=gen).to(
                device, torch.uint8
            ),
            "speed": torch.rand(batch_size, 1, generator=gen).to(device),
            "prev_actions": torch.rand(batch_size, 2, 3, generator=gen).to(device),
        }

    batch = Batch(
        obs=part(),
        action=(torch.rand(batch_size, 3, generator=gen) * 2 - 1).to(device),
        reward=torch.rand(batch_size, generator=gen).to(device),
        next_obs=part(),
        terminated=torch.zeros(batch_size, device=device),
        weights=torch.ones(batch_size, device=device),
        indices=np.arange(batch_size),
    )
    return obs_space, batch


def cnn_updates(rounds: int, batch_size: int) -> float:
    """SAC updates/s of the image agent (configs/sim_image.yaml's CNN, 4 x 64 x 64 grey)."""
    obs, batch = image_batch(batch_size)
    algo = SAC(SACConfig(batch_size=batch_size), CNNActorCritic(CNNConfig(), obs, ACTION_SPACE))
    return rate(lambda: algo.update(batch), 3, rounds)


class Paired:
    """Our rounds alternate with tmrl's (its interpreter stays up between them), so the
    machine's drift hits both sides alike; the ratio is the median of the per-round ratios."""

    def __init__(self, tmrl: TmrlProcess | None, calls: int, rounds: int) -> None:
        self.tmrl, self.calls, self.rounds = tmrl, calls, rounds

    def __call__(
        self, fn: Callable[[], object], figure: str, threads: int
    ) -> tuple[float, str, float | None]:
        """Our median rate, the text comparing it with tmrl's, tmrl's median rate."""
        mine: list[float] = []
        theirs: list[float] = []
        for _ in range(self.rounds):
            if self.tmrl is not None:
                request = {"figure": figure, "threads": threads, "calls": self.calls}
                theirs.append(float(self.tmrl.ask(request)["rate"]))
            torch.set_num_threads(threads)
            mine.append(rate(fn, self.calls, 1))
        if not theirs:
            return statistics.median(mine), "", None
        ratios = [m / t for m, t in zip(mine, theirs, strict=True)]
        base = statistics.median(theirs)
        text = f"  x{statistics.median(ratios):.2f} vs tmrl {base:.1f}"
        return statistics.median(mine), text, base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1], help="torch threads")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per figure (median taken)")
    parser.add_argument("--updates", type=int, default=30, help="updates per round")
    parser.add_argument("--size", type=int, default=50_000, help="transitions in the memory")
    parser.add_argument("--device", default="cpu", help="torch device of our learner")
    parser.add_argument("--no-tmrl", action="store_true", help="skip tmrl's figures")
    parser.add_argument("--tmrl-python", default=None, help="tmrl's interpreter")
    args = parser.parse_args()
    print_machine()  # the SAC/REDQ ceilings below use this run's matmul at each thread count

    tmrl = None
    if not args.no_tmrl:
        payload = {"size": args.size}
        tmrl = start_tmrl(TMRL_SCRIPT, payload, home="home_lidar_redq", python=args.tmrl_python)
    paired = Paired(tmrl, args.updates, args.rounds)

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    chunk = random_chunk(args.size, rng)
    memory = RingMemory(
        RingMemoryConfig(capacity=args.size), OBS_SPACE, ACTION_SPACE, device=args.device
    )
    memory.append(chunk)
    config = SACConfig(batch_size=256)  # tmrl's batch, for the side-by-side figures
    hidden = (256, 256)

    def model() -> MLPActorCritic:
        return MLPActorCritic(MLPConfig(hidden_sizes=hidden), OBS_SPACE, ACTION_SPACE)

    sac = SAC(config, model(), args.device)
    redq_cfg = REDQConfig(batch_size=256, n_critics=10, m_target=2, policy_delay=20)
    redq = REDQ(redq_cfg, model(), args.device)
    anchor = CleanRLStyleSAC(model(), hidden)
    batch = memory.sample(config.batch_size)
    params = sum(p.numel() for p in sac.model.parameters())
    print(
        f"device {args.device}, batch {config.batch_size}, hidden {hidden} ({params:,} "
        f"parameters; tmrl: {tmrl.ready.get('params', 0) if tmrl else '-'}), median of "
        f"{args.rounds} rounds of {args.updates} updates"
        + (", alternating with tmrl's" if tmrl else "")
    )
    for threads in args.threads:
        torch.set_num_threads(threads)
        gflops = matmul_gflops(args.rounds)  # at this thread count
        updates, vs_updates, _ = paired(lambda: sac.update(batch), "sac_updates", threads)
        steps, vs_steps, tmrl_steps = paired(
            lambda: sac.update(memory.sample(config.batch_size)), "sac_steps", threads
        )
        redq_updates, vs_redq, tmrl_redq = paired(
            lambda: redq.update(batch), "redq_updates", threads
        )
        anchor_updates = rate(lambda: anchor.update(batch), args.updates, args.rounds)
        print(
            f"threads {threads}: SAC updates/s {updates:7.1f}{vs_updates}"
            f"  x{updates / anchor_updates:.2f} vs CleanRL-style {anchor_updates:.1f}"
        )
        print(f"threads {threads}: SAC training steps/s (sample + update) {steps:7.1f}{vs_steps}")
        sac_ceiling = gflops * 1e9 / sac_flops(256, hidden[0])
        print(
            f"threads {threads}: SAC ceiling: {sac_flops(256, hidden[0]) / 1e6:.0f} MFLOP per "
            f"update at {gflops:.1f} GFLOP/s ({threads} thread matmul) = {sac_ceiling:.0f} "
            f"updates/s; reached {updates / sac_ceiling:.0%}"
            + (
                f"; the most any learner of these networks can be ahead of tmrl's "
                f"{tmrl_steps:.1f} steps/s: {sac_ceiling / tmrl_steps:.2f}x"
                if tmrl_steps
                else ""
            )
        )
        flops = redq_flops(256, hidden[0], 10, 2, 20)
        ceiling = gflops * 1e9 / flops
        print(
            f"threads {threads}: REDQ N=10 M=2 G=20 critic updates/s {redq_updates:7.1f}{vs_redq}"
        )
        print(
            f"threads {threads}: REDQ ceiling: {flops / 1e6:.0f} MFLOP per critic update at "
            f"{gflops:.1f} GFLOP/s ({threads} thread matmul) = {ceiling:.0f} updates/s; "
            f"reached {redq_updates / ceiling:.0%}"
            + (f"; at most {ceiling / tmrl_redq:.2f}x tmrl" if tmrl_redq else "")
        )
        cnn = cnn_updates(max(3, args.rounds // 2), 64)
        print(
            f"threads {threads}: image CNN (4 x 64 x 64, DrQ) SAC updates/s at batch 64 {cnn:7.1f}"
        )
    if tmrl is not None:
        tmrl.close()


if __name__ == "__main__":
    main()
