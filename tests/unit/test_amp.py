"""Mixed precision (``algorithm.amp``): the CUDA code paths, run on the CPU.

On the CPU the learner stays in float32 (``test_redq.py`` checks that). These tests widen
``AMP_DEVICE_TYPES`` to the CPU, whose autocast and gradient scaler behave like CUDA's, so that
the bf16 and fp16 paths (autocast regions, one gradient scaler per optimizer, skipped steps on
overflow, scaler state in checkpoints) are exercised on machines without a GPU.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from learnkit import ACTION_SPACE, OBS_SPACE, target_reaching_memory, worst_action_error

from tmrl2.algos import sac as sac_module
from tmrl2.algos.networks import MLPActorCritic, MLPConfig
from tmrl2.algos.redq import REDQ, REDQConfig
from tmrl2.algos.sac import SAC, AmpMode, SACConfig
from tmrl2.memory.batch import Batch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def amp_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sac_module, "AMP_DEVICE_TYPES", ("cuda", "cpu"))


def make(amp: AmpMode, cls: type[SAC] = SAC, seed: int = 0) -> SAC:
    torch.manual_seed(seed)
    model = MLPActorCritic(MLPConfig(hidden_sizes=(32, 32)), OBS_SPACE, ACTION_SPACE)
    if cls is REDQ:
        return REDQ(REDQConfig(amp=amp, n_critics=4, m_target=2, batch_size=64), model)
    return SAC(SACConfig(amp=amp, lr_actor=3e-3, lr_critic=3e-3, lr_alpha=3e-3), model)


@pytest.mark.parametrize("amp, dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_mixed_precision_runs_the_networks_in_half_and_still_learns(
    amp: AmpMode, dtype: torch.dtype
) -> None:
    algo = make(amp)
    assert algo.amp_dtype is dtype
    seen: list[torch.dtype] = []
    last_layer = algo.model.critic.q.linear_layers[-1]
    last_layer.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    memory = target_reaching_memory()
    assert worst_action_error(algo.model.actor) > 0.3
    for _ in range(400):
        stats = algo.update(memory.sample(128))
    assert all(np.isfinite(list(stats.values())))
    assert set(seen) == {dtype}  # every critic pass ran under autocast
    assert worst_action_error(algo.model.actor) < 0.1


def test_fp16_has_a_scaler_per_optimizer_and_skips_overflowing_steps() -> None:
    algo = make("fp16")
    names = algo._scaler_names()
    assert sorted(names) == ["actor", "alpha", "critic"]
    batch = target_reaching_memory().sample(64)
    algo.update(batch)
    critic_before = [p.detach().clone() for p in algo.model.critic.parameters()]
    scale_before = names["critic"].get_scale()
    # a reward beyond float range makes the critic's loss and gradients infinite
    algo.update(batch._replace(reward=torch.full_like(batch.reward, 3e38)))
    for before, after in zip(critic_before, algo.model.critic.parameters(), strict=True):
        assert torch.equal(before, after)  # the step was skipped, nothing was corrupted
    assert names["critic"].get_scale() < scale_before  # and the scale backed off
    stats = algo.update(batch)
    assert np.isfinite(stats["loss_critic"])


def test_scaler_state_is_checkpointed_and_restored() -> None:
    trained = make("fp16")
    batch: Batch = target_reaching_memory().sample(64)
    trained.update(batch._replace(reward=torch.full_like(batch.reward, 3e38)))  # scale drops
    for _ in range(3):
        trained.update(batch)
    buffer = io.BytesIO()
    torch.save(trained.state_dict(), buffer)
    buffer.seek(0)
    restored = make("fp16", seed=1)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    for name, scaler in trained._scaler_names().items():
        assert restored._scaler_names()[name].get_scale() == scaler.get_scale()
    torch.manual_seed(3)
    expected = trained.update(batch)
    torch.manual_seed(3)
    assert restored.update(batch) == expected


def test_redq_ensemble_under_fp16() -> None:
    algo = make("fp16", cls=REDQ)
    memory = target_reaching_memory()
    for _ in range(20):
        stats = algo.update(memory.sample(64))
    assert algo.amp_dtype is torch.float16 and all(np.isfinite(list(stats.values())))
