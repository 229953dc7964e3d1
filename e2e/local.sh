#!/usr/bin/env bash
# The local end-to-end suite: the whole system on one machine, no Docker. etcd,
# kube-apiserver and kube-controller-manager (garbage collector), Apache Kafka (KRaft), the
# operator as a process, and the process kubelet (e2e/local/src/kubelet.rs) that runs the
# processor Deployment's pods as local processes and writes their status back. It applies
# the samples, produces generated events, waits for Ready, compares the outputs with
# `replay`, kills a processor, changes the config, scales, gives a region its own cluster
# (tansu) and its replicator, deletes the pipeline (see e2e/README.md).
#
# Prints `ok   - <check>` / `FAIL - <check>` lines and `e2e-local: N passed, M failed`; exits
# non-zero on any failure. Where a tool is missing it prints `SKIPPED: e2e-local (<reason>)`
# and exits 0, except with CI set (scripts/test-all.sh sets it), where that is a failure.
#
# Tools: `bash scripts/install-test-tools.sh` (sourced from .tools/env.sh when present).
# Env: E2E_LOCAL_EVENTS (default 10000), E2E_LOCAL_STEADY_SECS (default 600, the steady-state
# window), E2E_LOCAL_KEEP=1 keeps the work folder.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS

missing() {
  if [ -n "${CI:-}" ]; then
    echo "FAIL - e2e-local tools: $1 (CI is set: the suite must run)"
    echo "e2e-local: 0 passed, 1 failed"
    exit 1
  fi
  echo "######################################################################"
  echo "SKIPPED: e2e-local ($1)"
  echo "         nothing was verified; run bash scripts/install-test-tools.sh"
  echo "######################################################################"
  exit 0
}

if [ -f .tools/env.sh ] && [ -z "${STOCKPULSE_KUBE_APISERVER:-}" ]; then
  # shellcheck source=/dev/null
  source .tools/env.sh
fi
for var in STOCKPULSE_ETCD STOCKPULSE_KUBE_APISERVER STOCKPULSE_KUBE_CONTROLLER_MANAGER STOCKPULSE_KAFKA_LIBS STOCKPULSE_TANSU; do
  path=${!var:-}
  [ -n "$path" ] || missing "$var is not set"
  [ -e "$path" ] || missing "$var=$path does not exist"
done
for tool in java openssl cargo; do
  command -v "$tool" >/dev/null 2>&1 || missing "no $tool command"
done

echo "==> e2e-local: building the processor, the operator and the suite"
cargo build --locked -p stockpulse-processor -p stockpulse-operator -p stockpulse-e2e-local --bins
target=${CARGO_TARGET_DIR:-target}/debug

echo "==> e2e-local: running"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
set +e
"$target/stockpulse-e2e-local" \
  --processor "$target/stockpulse-processor" \
  --operator "$target/stockpulse-operator" \
  --kubelet "$target/stockpulse-process-kubelet" \
  --repo . | tee "$out"
status=${PIPESTATUS[0]}
set -e
if ! grep -q '^e2e-local: [0-9]* passed' "$out"; then
  echo "FAIL - e2e-local ended without its summary (exit status $status)"
  echo "e2e-local: 0 passed, 1 failed"
  status=1
fi
echo "e2e-local took $((SECONDS - started))s (build included)"
exit "$status"
