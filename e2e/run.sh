#!/usr/bin/env bash
# End-to-end suite of the operator on a real cluster: kind + Helm + the samples.
#
# Needs a Docker engine, kind, kubectl and helm (STOCKPULSE_HELM or helm on PATH). Where no
# Docker engine answers (`docker info` fails) it prints a loud SKIPPED line and exits 0: the
# suite did not run and nothing is reported as passed. Any other missing tool is a failure.
#
# Env: E2E_CLUSTER (default stockpulse-e2e), E2E_KEEP_CLUSTER=1 keeps the cluster,
#      E2E_TANSU_IMAGE (default ghcr.io/tansu-io/tansu:latest), E2E_TIMEOUT (default 180s).
set -euo pipefail
cd "$(dirname "$0")/.."

skip() {
  echo "######################################################################"
  echo "SKIPPED: e2e suite (kind + Helm) did NOT run: $1"
  echo "         nothing was verified against a Kubernetes cluster"
  echo "######################################################################"
  exit 0
}

command -v docker >/dev/null 2>&1 || skip "no docker command on this machine"
docker info >/dev/null 2>&1 || skip "no Docker engine answers (docker info failed)"

HELM=${STOCKPULSE_HELM:-helm}
for tool in kind kubectl "$HELM"; do
  command -v "$tool" >/dev/null 2>&1 || { echo "e2e: FAILED: $tool is required when Docker is available" >&2; exit 1; }
done

CLUSTER=${E2E_CLUSTER:-stockpulse-e2e}
TIMEOUT=${E2E_TIMEOUT:-180s}
TANSU_IMAGE=${E2E_TANSU_IMAGE:-ghcr.io/tansu-io/tansu:latest}
OPERATOR_IMAGE=stockpulse-operator:e2e
NS=acme-sports
passed=0
failed=0
work=$(mktemp -d)

cleanup() {
  rm -rf "$work"
  if [ "${E2E_KEEP_CLUSTER:-0}" != 1 ]; then kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

check() { # check NAME COMMAND...
  local name=$1; shift
  if "$@"; then echo "ok   - $name"; passed=$((passed + 1)); else echo "FAIL - $name"; failed=$((failed + 1)); fi
}

eventually() { # eventually SECONDS COMMAND...: retries COMMAND until it succeeds
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 2
  done
}

jsonpath() { kubectl -n "$NS" get "$1" -o "jsonpath=$2"; }
equals() { [ "$(jsonpath "$1" "$2")" = "$3" ]; }

echo "==> kind cluster $CLUSTER"
kind get clusters 2>/dev/null | grep -x "$CLUSTER" >/dev/null || kind create cluster --name "$CLUSTER" --config e2e/kind-config.yaml --wait 120s

echo "==> operator image"
docker build -f operator/Dockerfile -t "$OPERATOR_IMAGE" .
kind load docker-image --name "$CLUSTER" "$OPERATOR_IMAGE"

echo "==> Helm install (2 replicas, leader election)"
kubectl apply -f manifests/namespace.yaml
"$HELM" upgrade --install stockpulse charts/stockpulse --namespace stockpulse-system \
  --set image.repository=stockpulse-operator --set image.tag=e2e --set image.pullPolicy=Never \
  --set replicaCount=2 --wait --timeout "$TIMEOUT"
check "CRDs established" kubectl wait --for=condition=Established --timeout=60s \
  crd/retailpipelines.retail.stockpulse.io crd/storeregions.retail.stockpulse.io crd/alertpolicies.retail.stockpulse.io
check "one replica holds the leader Lease" eventually 60 \
  bash -c '[ -n "$(kubectl -n stockpulse-system get lease stockpulse-operator -o jsonpath={.spec.holderIdentity})" ]'

echo "==> Kafka (tansu) in the cluster"
sed "s#TANSU_IMAGE#$TANSU_IMAGE#" e2e/tansu.yaml | kubectl apply -f -
kubectl -n "$NS" rollout status deployment/tansu --timeout="$TIMEOUT"

echo "==> wrong resources are refused by the API server"
for f in e2e/wrong/*.yaml; do
  expect=$(sed -n 's/^# expect: //p' "$f")
  out=$(kubectl apply --dry-run=server -f "$f" 2>&1 || true)
  check "refused: $(basename "$f") ($expect)" grep -qF "$expect" <<<"$out"
done

echo "==> samples (bootstrap servers pointed at tansu, replication factor 1)"
mkdir -p "$work/samples"
for f in manifests/samples/*.yaml; do
  [ "$(basename "$f")" = kustomization.yaml ] && continue # it lists the files; not a resource
  sed -e 's#bootstrapServers: .*#bootstrapServers: tansu.acme-sports.svc:9092#' \
      -e 's#replicationFactor: 3#replicationFactor: 1#' "$f" > "$work/samples/$(basename "$f")"
done
kubectl apply -f "$work/samples/"
check "pipeline TopicsReady" kubectl -n "$NS" wait --for=condition=TopicsReady rp/acme-sports --timeout="$TIMEOUT"
check "store regions Ready" kubectl -n "$NS" wait --for=condition=Ready sr --all --timeout="$TIMEOUT"
check "alert policies Ready" kubectl -n "$NS" wait --for=condition=Ready ap --all --timeout="$TIMEOUT"
for object in serviceaccount/acme-sports-processor configmap/acme-sports-config service/acme-sports-processor \
              poddisruptionbudget/acme-sports-processor deployment/acme-sports-processor; do
  check "$object owned by the pipeline" equals "$object" '{.metadata.ownerReferences[0].name}' acme-sports
done
check "pipeline counts 10 stores" eventually 60 equals rp/acme-sports '{.status.stores}' 10
check "pipeline counts 2 regions" equals rp/acme-sports '{.status.regions}' 2
check "pipeline renders 2 alert policies" equals rp/acme-sports '{.status.alertPolicies}' 2
check "sales topic has 12 partitions" equals rp/acme-sports '{.status.topics[0].partitions}' 12

echo "==> re-applying the same YAML changes nothing"
before=$(kubectl -n "$NS" get deployment/acme-sports-processor configmap/acme-sports-config rp/acme-sports -o jsonpath='{.items[*].metadata.resourceVersion}')
kubectl apply -f "$work/samples/"
sleep 20
after=$(kubectl -n "$NS" get deployment/acme-sports-processor configmap/acme-sports-config rp/acme-sports -o jsonpath='{.items[*].metadata.resourceVersion}')
check "no writes after re-apply ($before)" test "$before" = "$after"

echo "==> a store removed from a region"
kubectl -n "$NS" patch sr/eu-central --type=json -p '[{"op": "remove", "path": "/spec/stores/4"}]'
check "region counts 4 stores" eventually 60 equals sr/eu-central '{.status.stores}' 4
check "pipeline counts 9 stores" eventually 60 equals rp/acme-sports '{.status.stores}' 9

echo "==> a region with its own Kafka cluster gets a replicator"
sed "s#TANSU_IMAGE#$TANSU_IMAGE#" e2e/tansu-eu.yaml | kubectl apply -f -
kubectl -n "$NS" rollout status deployment/tansu-eu --timeout="$TIMEOUT"
kubectl -n "$NS" patch sr/eu-central --type=merge -p '{"spec":{"kafka":{"bootstrapServers":"tansu-eu.acme-sports.svc:9092"}}}'
check "replicator Deployment owned by the region" eventually 90 \
  equals deployment/eu-central-replicator '{.metadata.ownerReferences[0].name}' eu-central
check "ReplicationReady=True" eventually 120 \
  equals sr/eu-central '{.status.conditions[?(@.type=="ReplicationReady")].status}' True

echo "==> a partition decrease is refused with a condition"
kubectl -n "$NS" patch rp/acme-sports --type=merge -p '{"spec":{"topics":{"sales":{"partitions":6}}}}'
check "TopicsReady=False PartitionDecreaseRefused" eventually 60 \
  equals rp/acme-sports '{.status.conditions[?(@.type=="TopicsReady")].reason}' PartitionDecreaseRefused

echo "==> deletion through the finalizer"
kubectl -n "$NS" delete rp/acme-sports --wait=false
check "pipeline gone" eventually 90 bash -c "! kubectl -n $NS get rp/acme-sports"
check "processor Deployment garbage-collected" eventually 90 bash -c "! kubectl -n $NS get deployment/acme-sports-processor"

echo "e2e: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
