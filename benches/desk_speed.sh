#!/usr/bin/env bash
# The Agent Desktop's speed in headless Chromium against the real binary (benches/desk_speed.mjs):
#  1. offers: 50 chats arrive over 10 s; for each, the time from the offer leaving the gateway
#     (its event's timestamp) to the offer painted on the desk, p50/p99;
#  2. responsiveness: with 20 open chats of 500 messages each, input to paint for keystrokes in
#     the composer and for switching chats, p50/p99 (the goal: under 100 ms).
#
#   benches/desk_speed.sh [CHATS] [SECONDS]      e.g. benches/desk_speed.sh 50 10
#
# Everything runs on loopback on private ports and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
chats=${1:-50}
seconds=${2:-10}
port=${HTTP_PORT:-28480}

[ -d tests/browser/node_modules/playwright-core ] \
  || npm install --prefix tests/browser --no-audit --no-fund >/dev/null
cargo build --release --bin tandem >/dev/null 2>&1

work=$(mktemp -d)
trap 'kill "$tandem_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
hash=$(echo desk | target/release/tandem hash-password)
cat >"$work/tandem.toml" <<TOML
[log]
level = "warn"
[sip]
listen = "127.0.0.1:$((port + 1))"
[media]
rtp_port_min = $((port + 10))
rtp_port_max = $((port + 40))
[http]
listen = "127.0.0.1:$port"
max_events_per_request = 100
[rtc]
listen = "127.0.0.1:$((port + 2))"
[store]
url = "sqlite://$work/tandem.db"
[files]
dir = "$work/files"
[chat]
max_chats_per_device = 1000
[routing]
# Room for every chat of the run on one desk.
chat_load_percent = 1
[[services]]
name = "claims"
entries = ["claims-app"]
department = "claims"
[[agents]]
name = "alice"
display_name = "Alice"
password_hash = "$hash"
departments = ["claims"]
capacity_percent = 1000
TOML
target/release/tandem run --config "$work/tandem.toml" 2>"$work/tandem.log" &
tandem_pid=$!
for _ in $(seq 50); do
  curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
  sleep 0.2
done
node benches/desk_speed.mjs "http://127.0.0.1:$port" "$chats" "$seconds"
