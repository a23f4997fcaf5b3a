#!/usr/bin/env bash
# Installs the Stable-Baselines3 baseline of benchmarks/bench_gym.py in ./.venv-sb3 (idempotent).
# SB3 is never a dependency of tmrl2: it lives in its own virtualenv, which the benchmark runs
# as a subprocess (benchmarks/sb3_side.py) and skips, saying so, when this folder is absent.
#
# PyTorch first (a CPU build where no NVIDIA GPU is present, so that pip never pulls a
# multi-GB CUDA wheel), then stable-baselines3 and gymnasium with MuJoCo (Hopper-v5) and
# Box2D (CarRacing-v3; all wheels, no compiler needed). Override with SB3_TORCH, SB3_VERSION,
# PYTHON (the interpreter the venv is made from), e.g. SB3_TORCH="torch" on a GPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv-sb3
SB3_VERSION=${SB3_VERSION:-2.9.2}
if [ ! -x "$VENV/bin/python" ]; then
    echo "[sb3] creating $VENV with $("$PY" --version 2>&1)"
    "$PY" -m venv "$VENV"
fi
VPY=$VENV/bin/python
"$VPY" -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
if ! "$VPY" -c "import torch" >/dev/null 2>&1; then
    if command -v nvidia-smi >/dev/null 2>&1; then
        TORCH_SPEC=${SB3_TORCH:-"torch>=2.3"}
    else
        TORCH_SPEC=${SB3_TORCH:-"torch==2.13.0"}
    fi
    echo "[sb3] installing ${TORCH_SPEC}"
    "$VPY" -m pip install --quiet "${TORCH_SPEC}"
fi
if ! "$VPY" -c "import stable_baselines3, mujoco, Box2D, sys; \
sys.exit(stable_baselines3.__version__ != '${SB3_VERSION}')" >/dev/null 2>&1; then
    echo "[sb3] installing stable-baselines3==${SB3_VERSION} and gymnasium[mujoco,box2d]"
    "$VPY" -m pip install --quiet "stable-baselines3==${SB3_VERSION}" "gymnasium[mujoco,box2d]"
fi
# a real check: Hopper-v5 needs MuJoCo's native library, not only its Python package
"$VPY" - <<'EOF'
import gymnasium as gym
import stable_baselines3
import torch

env = gym.make("Hopper-v5")
env.reset(seed=0)
env.close()
print(
    f"[sb3] done: stable-baselines3 {stable_baselines3.__version__}, torch {torch.__version__}, "
    f"gymnasium {gym.__version__} (Hopper-v5 made)"
)
EOF
