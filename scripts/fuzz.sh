#!/usr/bin/env bash
# Runs the processor's fuzz targets (cargo fuzz, libFuzzer; processor/fuzz) on the corpora
# kept in processor/fuzz/corpus/<target>.
#
#   scripts/fuzz.sh                  every target for FUZZ_SECONDS each (default 60): CI's run
#   scripts/fuzz.sh engine 600       one target, ten minutes
#   FUZZ_KEEP=1 scripts/fuzz.sh ...  add what the run found to the repository's corpus and
#                                    minimise it (cargo fuzz cmin) afterwards
#
# Without FUZZ_KEEP the repository's corpus is only read: new inputs go to a scratch folder.
# A crash fails the run; its input is kept in processor/fuzz/artifacts/<target>/.
# cargo-fuzz is installed (pinned) into the tools cache. With a nightly toolchain the targets
# run under AddressSanitizer; without one, on stable with no sanitizer (RUSTC_BOOTSTRAP lets
# stable accept the coverage flags), and the run says so.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

CARGO_FUZZ_VERSION=0.13.2
cache=${STOCKPULSE_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stockpulse-tools}
fuzz_root="$cache/cargo-fuzz-$CARGO_FUZZ_VERSION"
if [ ! -x "$fuzz_root/bin/cargo-fuzz" ]; then
  echo "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION into $fuzz_root"
  cargo install --quiet --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION" --root "$fuzz_root"
fi
export PATH="$fuzz_root/bin:$PATH"

targets=(parse_event engine config)
if [ $# -ge 1 ]; then
  case " ${targets[*]} " in
    *" $1 "*) targets=("$1") ;;
    *) echo "fuzz: unknown target '$1' (targets: ${targets[*]})" >&2; exit 2 ;;
  esac
fi
seconds=${2:-${FUZZ_SECONDS:-60}}
case "$seconds" in
  '' | *[!0-9]*) echo "fuzz: the run time '$seconds' is not a number of seconds" >&2; exit 2 ;;
esac

if rustup run nightly rustc --version >/dev/null 2>&1; then
  toolchain=(+nightly)
  sanitizer=address
else
  echo "fuzz: no nightly toolchain: running on stable without AddressSanitizer"
  toolchain=()
  sanitizer=none
  export RUSTC_BOOTSTRAP=1
fi

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cd "$root/processor"
for target in "${targets[@]}"; do
  corpus="fuzz/corpus/$target"
  mkdir -p "$corpus"
  if [ "${FUZZ_KEEP:-0}" = 1 ]; then
    dirs=("$corpus")
  else
    mkdir -p "$scratch/$target"
    dirs=("$scratch/$target" "$corpus")
  fi
  echo "==> fuzz $target: ${seconds}s, sanitizer $sanitizer, corpus $corpus ($(find "$corpus" -type f | wc -l) inputs)"
  log="$scratch/$target.log"
  set +e
  cargo "${toolchain[@]}" fuzz run --sanitizer "$sanitizer" "$target" "${dirs[@]}" -- \
    -max_total_time="$seconds" -rss_limit_mb=4096 -max_len=65536 -print_final_stats=1 >"$log" 2>&1
  status=$?
  set -e
  grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::new_units_added|stat::peak_rss_mb)' "$log" || true
  if [ "$status" -ne 0 ]; then
    tail -n 60 "$log"
    echo "FAIL - fuzz $target: exit $status (the input is under processor/fuzz/artifacts/$target/)"
    exit "$status"
  fi
  if [ "${FUZZ_KEEP:-0}" = 1 ]; then
    cargo "${toolchain[@]}" fuzz cmin --sanitizer "$sanitizer" "$target" "$corpus" >/dev/null 2>&1
    echo "fuzz $target: corpus minimised to $(find "$corpus" -type f | wc -l) inputs"
  fi
  echo "ok   - fuzz $target: ${seconds}s without a crash"
done
