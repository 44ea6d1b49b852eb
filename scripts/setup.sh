#!/usr/bin/env bash
# Create .venv and install vaelab with the local CPU build of PyTorch (torch==2.13.0).
#   bash scripts/setup.sh          runtime only
#   bash scripts/setup.sh --dev    plus the test and lint tools, Ray Tune and Optuna (the
#                                  sweep extra: vaelab sweep and its tests), and (as root,
#                                  with apt-get) Debian's chromium for the browser tests
# Pinning torch matters: an unpinned `torch` would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
extras=""
if [ "${1:-}" = "--dev" ]; then extras="[dev,sweep]"; fi
if [ ! -x .venv/bin/python ]; then
  "${PYTHON:-python3}" -m venv .venv
fi
log=$(mktemp)
if ! .venv/bin/python -m pip install --no-compile --quiet --disable-pip-version-check \
     "torch==${VAELAB_TORCH_VERSION:-2.13.0}" -e ".${extras}" >"$log" 2>&1; then
  grep -v "^WARNING: Location .* is ignored" "$log" >&2
  echo "setup.sh: pip install failed" >&2
  rm -f "$log"
  exit 1
fi
grep -v "^WARNING: Location .* is ignored" "$log" || true  # show pip's other messages
rm -f "$log"
# bytecode for what the commands import, written once here (pip's --no-compile above skips
# the files no command imports; under PYTHONDONTWRITEBYTECODE Python would otherwise
# compile them again in every process)
.venv/bin/python scripts/bytecode.py >/dev/null
if [ -n "$extras" ]; then bash scripts/install_browser.sh; fi
.venv/bin/python -c "import torch, vaelab; print(f'vaelab {vaelab.__version__} ready (torch {torch.__version__})')"
