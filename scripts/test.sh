#!/usr/bin/env bash
# The whole test suite on a fresh machine: system packages the tests start (a real Prometheus),
# a virtualenv with the project and its dev tools, a Python 3.12 virtualenv with helm-sdkpy
# (Helm as a library; it needs Python >= 3.12) for linting the chart, then pytest.
# A local environment that is broken (a dangling link, a venv whose interpreter moved or is gone)
# is made anew rather than trusted or refused.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq prometheus >/dev/null
fi

# fresh_venv DIR PYTHON: DIR is a working venv of PYTHON's version afterwards.
fresh_venv() {
  local dir=$1 python=$2 want
  want=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  if [ -L "$dir" ] || { [ -e "$dir" ] && ! "$dir/bin/python" -c \
      "import sys; assert '%d.%d' % sys.version_info[:2] == '$want'" 2>/dev/null; }; then
    echo "test.sh: $dir is broken or a link; making it anew" >&2
    rm -rf "$dir"
  fi
  [ -e "$dir" ] || "$python" -m venv "$dir"
}

fresh_venv .venv python3
.venv/bin/pip install -q -e '.[dev]'
py312=$(command -v python3.12 2>/dev/null || true)
if [ -z "$py312" ] || ! "$py312" -c 'import sys' 2>/dev/null; then
  py312=$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3.12 2>/dev/null | tail -n 1)
fi
if [ -n "$py312" ]; then
  fresh_venv .venv-helm "$py312"
  .venv-helm/bin/pip install -q helm-sdkpy
  export CANARY_HELM_PYTHON="$PWD/.venv-helm/bin/python"
fi
exec .venv/bin/python -m pytest "$@"
