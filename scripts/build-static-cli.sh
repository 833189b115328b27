#!/usr/bin/env bash
# Builds maestro-cli as one static-pie executable (glibc linked in with crt-static; TLS is rustls,
# so no OpenSSL), stripped, at target/static/maestro-cli. The explicit --target keeps build
# scripts and proc-macros dynamically linked, as they must be. docs/cli.md, "Size and start time".
set -euo pipefail
cd "$(dirname "$0")/.."
triple=x86_64-unknown-linux-gnu
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
  CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/static-build}" \
  cargo build --release -p maestro-cli --target "$triple"
out=target/static
mkdir -p "$out"
strip -o "$out/maestro-cli" "${CARGO_TARGET_DIR:-target/static-build}/$triple/release/maestro-cli"
file "$out/maestro-cli" | grep -q 'static' || { echo "error: $out/maestro-cli is not statically linked" >&2; exit 1; }
ls -l "$out/maestro-cli"
