#!/usr/bin/env bash
# The first GPU run of sv4d, prepared (issue 19): every CUDA path once, with figures (gpu_check.py
# says what each step does).
#
#   bash benchmarks/gpu_check.sh                 on a CUDA machine: at most ~8 minutes on an H200
#   bash benchmarks/gpu_check.sh --dry-run       the same steps at tiny sizes on the CPU (CI runs this)
#   bash benchmarks/gpu_check.sh --out DIR       keep the outputs and DIR/results.json
#
# The GPU machine has its own PyTorch and may reach no package registry. What sv4d needs besides
# PyTorch then travels with the working tree as wheels in benchmarks/wheels/ (ignored by git: carry
# it). Prepare them where the registry is reachable, for the GPU machine's Python and platform:
#
#   pip download -d benchmarks/wheels --only-binary=:all: --python-version 3.11 \
#       --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
#       safetensors einops av scikit-image scipy tqdm pillow matplotlib huggingface_hub \
#       xatlas fast-simplification accelerate
#
# The script installs from there (pip --no-index) only what does not import; exit status 2 when
# something is missing and there are no wheels, 1 when a step failed, 0 when every step passed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
missing=$("$PY" - <<'PYEOF'
import importlib.util
needed = {"safetensors": "safetensors", "einops": "einops", "av": "av", "skimage": "scikit-image",
          "scipy": "scipy", "tqdm": "tqdm", "PIL": "pillow", "matplotlib": "matplotlib",
          "huggingface_hub": "huggingface_hub", "xatlas": "xatlas",
          "fast_simplification": "fast-simplification", "accelerate": "accelerate"}
print(" ".join(pkg for mod, pkg in needed.items() if importlib.util.find_spec(mod) is None))
PYEOF
)
if [ -n "$missing" ]; then
    if [ -d benchmarks/wheels ]; then
        echo "gpu_check: installing $missing from benchmarks/wheels"
        # shellcheck disable=SC2086
        "$PY" -m pip install -q --no-index --find-links benchmarks/wheels $missing
    else
        echo "gpu_check: missing $missing, and there is no benchmarks/wheels/ to install them from (see the header)" >&2
        exit 2
    fi
fi
exec "$PY" benchmarks/gpu_check.py "$@"
