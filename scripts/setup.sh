#!/usr/bin/env bash
# Sets up EVO RL in ./.venv (idempotent): PyTorch first (a CPU build where no NVIDIA GPU is
# present, so that pip never pulls a multi-GB CUDA wheel by accident), then the package with
# its test extras and the Box2D/MuJoCo Gymnasium tasks (wheels only). Override the torch
# requirement with TMRL2_TORCH, e.g. TMRL2_TORCH="torch".
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
VPY=.venv/bin/python
"$VPY" -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
if ! "$VPY" -c "import torch" >/dev/null 2>&1; then
    if command -v nvidia-smi >/dev/null 2>&1; then
        TORCH_SPEC=${TMRL2_TORCH:-"torch>=2.3"}
    else
        TORCH_SPEC=${TMRL2_TORCH:-"torch==2.13.0"}
    fi
    echo "[setup] installing ${TORCH_SPEC}"
    "$VPY" -m pip install --quiet "${TORCH_SPEC}"
fi
echo "[setup] installing tmrl2, its test tools and the Gymnasium Box2D/MuJoCo tasks"
"$VPY" -m pip install --quiet -e ".[test,gym]"
echo "[setup] done: $("$VPY" -c 'import torch, tmrl2; print("tmrl2", tmrl2.__version__, "torch", torch.__version__)')"
