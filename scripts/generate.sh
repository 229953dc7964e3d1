#!/usr/bin/env bash
# Regenerates every generated file of the repository from the code (tests fail when a
# committed copy is stale):
#   examples/stores.ndjson, examples/catalog.ndjson   the example brand's reference data
#   docs/event.schema.json                           the event JSON Schema
#   crds/, manifests/crds/, charts/ CRDs, docs/crd-reference.md   (operator crdgen)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run -q -p stockpulse-processor -- generate --stores-out examples/stores.ndjson --catalog-out examples/catalog.ndjson
cargo run -q -p stockpulse-processor -- schema > docs/event.schema.json
if [ -d operator ]; then
  cargo run -q -p stockpulse-operator -- crdgen
fi
echo "generated files are up to date"
