#!/usr/bin/env bash
# Runs every check and test of stockpulse, installing what the tests need (Apache Kafka,
# tansu, helm, kubernetes-validate; see scripts/install-test-tools.sh) first. Exits non-zero on any failure, and ends with one
# line `stockpulse: N passed, N failed, N skipped` (the kind e2e suite counts as skipped where
# it cannot run; e2e/local.sh, the local end-to-end suite, runs here).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/toolchains.sh
source scripts/lib/toolchains.sh
need cargo "building and testing the workspace (Rust)"
log=$(mktemp)
trap 'rm -f "$log"' EXIT

started=$SECONDS
echo "==> installing test tools (cached in ~/.cache/stockpulse-tools)"
bash scripts/install-test-tools.sh
# shellcheck source=/dev/null
source .tools/env.sh
# The tools are installed: a test that needs one must run, never skip (the harnesses read CI).
export CI="${CI:-1}"

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "==> tests"
set +e
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast 2>&1 | tee "$log"
  tests=${PIPESTATUS[0]}
  # nextest does not run doctests
  cargo test --workspace --locked --doc 2>&1 | tee -a "$log"
  doctests=${PIPESTATUS[0]}
else
  cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$log"
  tests=${PIPESTATUS[0]}
  doctests=0
fi

echo "==> fuzz (cargo fuzz, ${FUZZ_SECONDS:-60}s per target on the kept corpora; scripts/fuzz.sh)"
bash scripts/fuzz.sh 2>&1 | tee -a "$log"
fuzz=${PIPESTATUS[0]}

echo "==> e2e (kind + helm)"
bash e2e/run.sh 2>&1 | tee -a "$log"
e2e=${PIPESTATUS[0]}

echo "==> e2e-local (control plane + Apache Kafka + operator + process kubelet, no Docker)"
bash e2e/local.sh 2>&1 | tee -a "$log"
e2e_local=${PIPESTATUS[0]}
set -e

# Count from the runners' own summaries: nextest's "N tests run: X passed, Y failed" line,
# cargo test's "test result: ... X passed; Y failed" lines (doctests, or every test without
# nextest), and the fuzz runs' and e2e suites' "ok   - " / "FAIL - " lines.
read -r passed failed < <(awk '
  /tests run: [0-9]+ passed/ || /^test result: / {
    for (i = 1; i < NF; i++) { if ($(i + 1) ~ /^passed/) p += $i; if ($(i + 1) ~ /^failed/) f += $i }
  }
  /^ok   - / { p++ }
  /^FAIL - / { f++ }
  END { print p + 0, f + 0 }' "$log")
skipped=0
if grep -q '^SKIPPED: e2e suite' "$log"; then
  skipped=1
fi
if grep -q '^SKIPPED: e2e-local' "$log"; then
  skipped=$((skipped + 1))
fi
skipped=$((skipped + $(grep -c '^SKIPPED: control plane' "$log" || true)))
status=0
if [ "$tests" -ne 0 ] || [ "$doctests" -ne 0 ] || [ "$fuzz" -ne 0 ] || [ "$e2e" -ne 0 ] || [ "$e2e_local" -ne 0 ]; then
  status=1
  [ "$failed" -gt 0 ] || failed=1
fi
echo "test-all: $((SECONDS - started))s in all"
echo "stockpulse: $passed passed, $failed failed, $skipped skipped"
exit "$status"
