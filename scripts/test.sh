#!/usr/bin/env bash
# The whole test suite on a fresh machine: system packages the tests start (a real Prometheus),
# a virtualenv with the project and its dev tools, a Python 3.12 virtualenv with helm-sdkpy
# (Helm as a library; it needs Python >= 3.12) for linting the chart, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq prometheus >/dev/null
fi
python3 -m venv .venv
.venv/bin/pip install -q -e '.[dev]'
py312=$(command -v python3.12 2>/dev/null || true)
if [ -z "$py312" ] || ! "$py312" -c 'import sys' 2>/dev/null; then
  py312=$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3.12 2>/dev/null | tail -n 1)
fi
if [ -n "$py312" ]; then
  [ -x .venv-helm/bin/python ] || "$py312" -m venv .venv-helm
  .venv-helm/bin/pip install -q helm-sdkpy
  export CANARY_HELM_PYTHON="$PWD/.venv-helm/bin/python"
fi
exec .venv/bin/python -m pytest "$@"
