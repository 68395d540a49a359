#!/usr/bin/env bash
# Download, on this machine, the Python wheels the GPU machine lacks, into .whl/ (git-ignored).
# The GPU image has torch, torchvision, numpy, scipy, pillow, matplotlib, tqdm, pytest, coverage,
# attrs, psutil, pygments, packaging, python-dateutil, typing-extensions (see the device's KINDS.md)
# but not pytorch-fid, nbval or the Jupyter kernel stack that nbval drives. bench/gpu/run.sh installs
# whatever lies in .whl/ with `pip install --no-deps --target /tmp/site`.
#
# Usage, from the repo root:   bench/gpu/fetch_wheels.sh [PYTHON]        (about 4 MB)
# Then call the device with carry [".devpack", ".whl"].
# Versions are the ones tested in this repo's .venv; the GPU machine runs Python 3.12 (cp312).
# Left out on purpose (optional at run time, large): debugpy (ipykernel runs without it), jedi/parso
# (IPython completion only), widgetsnbextension/jupyterlab_widgets (front-end assets only).
set -euo pipefail
PY="${1:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
PKGS=(
  pytorch-fid==0.3.0
  nbval==0.11.0 nbformat==5.11.1 fastjsonschema==2.22.3 jsonschema==4.26.0
  jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1
  jupyter_core==5.9.1 jupyter_client==8.10.0 platformdirs==4.14.8 pyzmq==27.3.0 tornado==6.6.1
  traitlets==5.16.1 ipykernel==7.4.0 comm==0.2.3 ipython==9.18.1 ipython_pygments_lexers==1.1.1
  matplotlib-inline==0.2.2 pexpect==4.9.0 ptyprocess==0.7.0 prompt_toolkit==3.0.53
  stack-data==0.6.3 asttokens==3.0.2 executing==2.3.0 pure_eval==0.2.4 nest-asyncio2==1.7.4
  ipywidgets==8.1.9
)
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${PKGS[@]}"
# wcwidth ships a compiled wheel too; the pure-Python one of the same version is 0.5 MB smaller
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --platform any -d .whl wcwidth==0.9.4
ls .whl
du -sh .whl
