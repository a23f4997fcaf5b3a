"""The transport benchmark is fair and honest: tmrl's payload is tmrl's real sample format
(built by tmrl's own compressor, checked against tmrl's own observation spaces in tmrl's
venv), a failed figure prints ``failed`` (never a ratio against 0), ours against tmrl's best
comes first, and the ceiling helpers return positive finite numbers quickly."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import bench_transport  # noqa: E402
import timing  # noqa: E402
import tmrl_baseline  # noqa: E402
import tmrl_transport  # noqa: E402

# Runs in tmrl's venv: the benchmark's buffer, and a reference sample that goes through
# tmrl's own path (its interface's observation space, rtgym's action buffer, the config's
# OBS_PREPROCESSOR and SAMPLE_COMPRESSOR); prints both structures.
SCRIPT = """
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import tmrl_transport
from tmrl.config import config_objects as cfg_obj

def shape_of(x):
    if isinstance(x, (tuple, list)):
        return [type(x).__name__, [shape_of(y) for y in x]]
    if isinstance(x, np.ndarray):
        return ["ndarray", x.dtype.str, list(x.shape)]
    if isinstance(x, dict):
        return ["dict", sorted(x)]
    return [type(x).__name__]

buffer = tmrl_transport.tmrl_buffer(sys.argv[2], 0, 3)
interface = cfg_obj.CONFIG_DICT["interface"]()
obs_space, act_space = interface.get_observation_space(), interface.get_action_space()
acts = [act_space.sample() for _ in range(cfg_obj.CONFIG_DICT["act_buf_len"])]
raw = (*obs_space.sample(), *acts)
act = act_space.sample()
ref = cfg_obj.SAMPLE_COMPRESSOR(act, cfg_obj.OBS_PREPROCESSOR(raw), 0.5, False, False, {})
print("RESULT " + json.dumps({
    "buffer_class": type(buffer).__module__ + "." + type(buffer).__name__,
    "samples": len(buffer),
    "ours": shape_of(buffer.memory[0]),
    "ref": shape_of(ref),
    "compressor": cfg_obj.SAMPLE_COMPRESSOR.__name__,
}))
"""


def tmrl_structure(kind: str) -> dict[str, Any]:
    python = tmrl_baseline.tmrl_python()
    if python is None:
        pytest.skip(
            "tmrl 0.7.1 baseline not installed (run /work/shared/tools/install_tmrl_baseline.sh"
            "): cannot check the benchmark's tmrl payload against tmrl's own compressor"
        )
    env = tmrl_baseline.tmrl_environ(bench_transport.TMRL_HOME[kind])
    command = [str(python), "-c", SCRIPT, str(BENCHMARKS), kind]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-2000:]
    result: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
    return result


@pytest.mark.parametrize(
    ("kind", "newest"),
    [("lidar", ["ndarray", "<f4", [19]]), ("image", ["ndarray", "|u1", [64, 64]])],
)
def test_the_tmrl_payload_is_tmrls_own_sample_format(kind: str, newest: list[Any]) -> None:
    got = tmrl_structure(kind)
    assert got["buffer_class"] == "tmrl.networking.Buffer" and got["samples"] == 3
    assert got["compressor"] == tmrl_transport.COMPRESSORS[kind]
    assert got["ours"] == got["ref"]
    # (act, obs, rew, terminated, truncated, info); obs ends with the newest scan or frame only
    _, parts = got["ours"]
    assert parts[0] == ["ndarray", "<f4", [3]]
    assert parts[1][1][-1] == newest


def rows(tmrl_rate: float, tmrl_workers: int = 1) -> list[dict[str, Any]]:
    return [
        {"side": "ours", "obs": "lidar", "workers": 1, "rate": 300_000.0},
        {"side": "ours", "obs": "lidar", "workers": 4, "rate": 400_000.0},
        {
            "side": "tmrl",
            "obs": "lidar",
            "workers": tmrl_workers,
            "variant": "flood",
            "rate": tmrl_rate,
        },
    ]


def test_a_failed_measurement_prints_failed_never_a_ratio() -> None:
    assert "failed" in bench_transport.figure(0.0)
    assert "failed" in bench_transport.figure(math.nan)
    assert timing.ratio(300_000.0, 0.0).startswith("failed")
    assert timing.ratio(0.0, 95_000.0).startswith("failed")
    assert timing.fraction(0.0, 1e6) == "failed"
    lines = bench_transport.summary(rows(tmrl_rate=0.0))
    assert lines == ["lidar: ratio to tmrl's best: failed (every tmrl run failed)"]


def test_the_ratio_to_tmrls_best_comes_first() -> None:
    lines = bench_transport.summary(rows(tmrl_rate=100_000.0) + rows(50_000.0, 4)[2:])
    assert lines[0].startswith("lidar: ours / tmrl's best figure of the run")
    assert "100,000 samples/s with 1 worker(s), flood" in lines[0]
    assert "1 workers 3.0x, 4 workers 4.0x" in lines[0]
    assert lines[1] == "  same workers, tmrl's better pacing: 1 workers 3.0x, 4 workers 8.0x"


def test_no_tmrl_says_so() -> None:
    lines = bench_transport.summary(rows(1.0)[:2])
    assert lines == ["lidar: ratio to tmrl's best: failed (tmrl not measured)"]


def test_the_ceiling_helpers_are_positive_finite_and_quick() -> None:
    start = time.monotonic()
    figures = [
        timing.matmul_gflops(size=64, seconds=0.02),
        timing.mem_bandwidth_gbs(mib=8, seconds=0.02),
        timing.zmq_ceiling(1000, seconds=0.05)["msgs_per_s"],
    ]
    assert all(math.isfinite(f) and f > 0 for f in figures), figures
    assert time.monotonic() - start < 30  # torch's import included, on a loaded machine
    cpu = timing.cpu()
    assert cpu.model and cpu.cores >= 1 and cpu.simd in ("avx512", "avx2", "no avx2")
    assert "AVX-512: " in timing.cpu_flags_line()
