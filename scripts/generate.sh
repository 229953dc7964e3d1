#!/usr/bin/env bash
# Regenerates every generated file of the repository from the code (tests fail when a
# committed copy is stale):
#   examples/stores.ndjson, examples/catalog.ndjson   the example brand's reference data
#   docs/event.schema.json                           the event JSON Schema
#   crds/, manifests/crds/, charts/ CRDs, docs/crd-reference.md,
#   docs/metrics.md (the metrics reference)         (operator crdgen)
#   manifests/operator/install.yaml                  the chart rendered without Helm labels
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run -q -p stockpulse-processor -- generate --stores-out examples/stores.ndjson --catalog-out examples/catalog.ndjson
cargo run -q -p stockpulse-processor -- schema > docs/event.schema.json
if [ -d operator ]; then
  cargo run -q -p stockpulse-operator -- crdgen
  helm=${STOCKPULSE_HELM:-helm}
  if command -v "$helm" >/dev/null 2>&1; then
    "$helm" template stockpulse charts/stockpulse --namespace stockpulse-system --set plainManifests=true \
      > manifests/operator/install.yaml
  else
    echo "generate: no helm (run scripts/install-test-tools.sh): manifests/operator/install.yaml not rendered" >&2
  fi
fi
echo "generated files are up to date"
