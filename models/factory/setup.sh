#!/usr/bin/env bash
# Creates the model factory's virtual environment (models/factory/.venv, git-ignored).
# PyTorch comes from Debian's python3-torch (CPU), seen through --system-site-packages;
# everything else is pinned in requirements.txt and installed from PyPI.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv="$here/.venv"
py=${RETRACE_FACTORY_PYTHON:-/usr/bin/python3}

if ! "$py" -c 'import torch' 2>/dev/null; then
  echo "models:setup: $py cannot import torch. Install Debian's python3-torch (apt-get install python3-torch python3-venv)," >&2
  echo "or point RETRACE_FACTORY_PYTHON at a Python that has PyTorch." >&2
  exit 1
fi
stamp="$venv/.requirements.sha256"
want=$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)
if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  echo "models:setup: $venv is up to date"
  exit 0
fi
"$py" -m venv --system-site-packages "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
echo "$want" > "$stamp"
"$venv/bin/python" -c 'import torch, numpy, onnxruntime; print(f"models:setup: torch {torch.__version__}, numpy {numpy.__version__}, onnxruntime {onnxruntime.__version__}")'
