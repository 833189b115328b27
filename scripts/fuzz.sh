#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ (one per wire decoder) for SECONDS each (default 30)
# and fails if any of them finds a crash (the input is left in fuzz/artifacts/<target>/).
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`); without either it
# prints a "skipped" line and exits 0, so it can run on any machine.
#
#   scripts/fuzz.sh            # 30 s per target
#   scripts/fuzz.sh 300        # 5 min per target
#   scripts/fuzz.sh 60 mqtt_gate_frame json_cloudevent   # only these targets
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-30}"
if [[ ! "$seconds" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 [SECONDS] [TARGET...]" >&2
  exit 2
fi
shift $(($# > 0 ? 1 : 0))

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz: skipped: no nightly toolchain (rustup toolchain install nightly)"
  exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz: skipped: cargo-fuzz is not installed (cargo install cargo-fuzz)"
  exit 0
fi

# The same flags for build and run, so that run does not rebuild: AddressSanitizer (the
# default) and debug assertions (integer overflow checks, as in the tests).
flags=(--debug-assertions)
if (($# > 0)); then
  targets=("$@")
else
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
if ((${#targets[@]} == 0)); then
  echo "fuzz: no targets found in fuzz/" >&2
  exit 1
fi

echo "==> cargo fuzz build (${#targets[@]} targets)"
cargo +nightly fuzz build "${flags[@]}"

failed=()
for t in "${targets[@]}"; do
  echo "==> fuzz $t for ${seconds}s"
  # New inputs go to fuzz/corpus/<target> (kept between runs, not committed); the committed
  # seeds in fuzz/seeds/<target> (fuzz/seeds/generate.py) are read as well.
  corpora=("$PWD/fuzz/corpus/$t")
  mkdir -p "${corpora[0]}"
  if [[ -d "fuzz/seeds/$t" ]]; then corpora+=("$PWD/fuzz/seeds/$t"); fi
  if ! cargo +nightly fuzz run "${flags[@]}" "$t" "${corpora[@]}" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1; then
    failed+=("$t")
    echo "fuzz: $t FAILED; the input is in fuzz/artifacts/$t/" >&2
  fi
done

if ((${#failed[@]})); then
  echo "fuzz: ${#failed[@]} of ${#targets[@]} targets failed: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: all ${#targets[@]} targets ran ${seconds}s without a crash"
