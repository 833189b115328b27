#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what the tests need (PostgreSQL, Mosquitto), starts
# a throwaway PostgreSQL cluster on a free port, runs every test, and stops the cluster.
# Fails loudly when something cannot be installed or started.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
command -v python3 >/dev/null || need_apt+=(python3)
command -v mosquitto >/dev/null || [[ -x /usr/sbin/mosquitto ]] || need_apt+=(mosquitto)
command -v mosquitto_sub >/dev/null || need_apt+=(mosquitto-clients)
command -v openssl >/dev/null || need_apt+=(openssl)
command -v sqlite3 >/dev/null || need_apt+=(sqlite3)
if ((${#need_apt[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "error: missing packages ${need_apt[*]} and not root; install them first" >&2
    exit 1
  fi
  echo "==> installing ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || { echo "error: apt-get update failed" >&2; exit 1; }
  apt-get install -y -qq "${need_apt[@]}" >/dev/null || { echo "error: apt-get install ${need_apt[*]} failed" >&2; exit 1; }
fi
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { echo "error: PostgreSQL server binaries still missing" >&2; exit 1; }
ls /usr/lib/postgresql/*/bin/pgbench >/dev/null 2>&1 || command -v pgbench >/dev/null || { echo "error: pgbench (PostgreSQL's own benchmark tool, run by the bench's scale smoke test) is missing" >&2; exit 1; }
command -v mosquitto >/dev/null || [[ -x /usr/sbin/mosquitto ]] || { echo "error: mosquitto (the MQTT broker the MQTT tests run) is missing" >&2; exit 1; }
export PATH="$PATH:/usr/sbin"
# The official Pub/Sub emulator is preinstalled in this machine image and cannot be installed from
# any registry this machine reaches: fail clearly when it is absent.
if [[ -z "${MAESTRO_PUBSUB_EMULATOR:-}" ]] && ! command -v cloud-pubsub-emulator >/dev/null; then
  launcher=$(dpkg -L google-cloud-cli-pubsub-emulator 2>/dev/null | grep 'bin/cloud-pubsub-emulator$' | head -n1 || true)
  if [[ -z "$launcher" || ! -x "$launcher" ]]; then
    echo "error: the Pub/Sub emulator launcher cloud-pubsub-emulator is missing (Debian package" \
      "google-cloud-cli-pubsub-emulator, preinstalled in the machine image); the Pub/Sub tests need it." \
      "Set MAESTRO_PUBSUB_EMULATOR=/path/to/cloud-pubsub-emulator if it lives elsewhere." >&2
    exit 1
  fi
  export MAESTRO_PUBSUB_EMULATOR="$launcher"
fi
echo "==> Pub/Sub emulator: ${MAESTRO_PUBSUB_EMULATOR:-$(command -v cloud-pubsub-emulator)}"

echo "==> starting a throwaway PostgreSQL"
eval "$(PG_FAST=1 scripts/pg-start.sh)"
trap 'scripts/pg-stop.sh' EXIT
echo "    $MAESTRO_TEST_DATABASE_URL"

echo "==> building the maestro binary (the benchmark harness's smoke test runs it as a server process)"
cargo build -p maestro --bin maestro

echo "==> running the test suite"
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
