#!/usr/bin/env bash
# Runs every check and test of stockpulse, installing what the tests need (tansu, helm,
# kubernetes-validate) into .tools/ first. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> installing test tools into .tools/"
eval "$(bash scripts/install-test-tools.sh)"

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "==> tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
  # nextest does not run doctests
  cargo test --workspace --locked --doc
else
  cargo test --workspace --locked --no-fail-fast
fi

echo "==> e2e (kind + helm)"
bash e2e/run.sh
