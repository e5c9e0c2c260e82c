#!/usr/bin/env bash
# Drives SIPp's built-in `uac` against Tandem's echo at a fixed rate and reports calls per second,
# failed calls, retransmissions and Tandem's CPU time per call (utime + stime from /proc).
#
#   benches/sipp_load.sh [RATE] [SECONDS] [TRANSPORT]     e.g. benches/sipp_load.sh 6000 10 u1
#
# TANDEM_BIN runs another build (e.g. an older one, for a before/after) instead of building this one.
# Everything runs on loopback on private ports and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
rate=${1:-6000}
seconds=${2:-10}
transport=${3:-u1}
calls=$((rate * seconds))
port=${SIP_PORT:-25060}

command -v sipp >/dev/null || { echo "sipp is missing: apt-get install sip-tester" >&2; exit 1; }
bin=${TANDEM_BIN:-target/release/tandem}
[ -n "${TANDEM_BIN:-}" ] || cargo build --release --bin tandem >/dev/null 2>&1

work=$(mktemp -d)
trap 'kill "$tandem_pid" 2>/dev/null && wait "$tandem_pid" 2>/dev/null; rm -rf "$work"' EXIT
cat >"$work/tandem.toml" <<TOML
[log]
level = "warn"
[sip]
listen = "127.0.0.1:$port"
max_calls = 1000000
echo = true
# One SIPp sends every call: lift the per-source budgets.
invites_per_minute_per_source = 4000000000
invite_burst_per_source = 4000000000
max_unconfirmed_calls_per_source = 1000000
[media]
# Between the SIP ports above, the tests' RTP ranges (1100-20900) and the kernel's ephemeral
# ports (32768 and up): a leg whose port another socket holds would fail its call.
rtp_port_min = 26000
rtp_port_max = 32700
TOML
"$bin" run --config "$work/tandem.toml" 2>"$work/tandem.log" &
tandem_pid=$!
sleep 0.5

clk=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$tandem_pid/stat"; }
before=$(cpu)
start=$(date +%s.%N)
sipp "127.0.0.1:$port" -sn uac -s echo -t "$transport" -r "$rate" -m "$calls" -l $((rate * 4)) \
  -p $((port + 1)) -mp $((port + 2)) -buff_size 4194304 -nostdin -timeout $((seconds * 3 + 30))s \
  -trace_stat -fd 1 -stf "$work/stat.csv" >/dev/null 2>&1 || true
end=$(date +%s.%N)
after=$(cpu)

last=$(tail -n 1 "$work/stat.csv")
ok=$(echo "$last" | cut -d';' -f16)
failed=$(echo "$last" | cut -d';' -f18)
retrans=$(echo "$last" | cut -d';' -f58)
awk -v ok="$ok" -v failed="$failed" -v retrans="$retrans" -v ticks=$((after - before)) -v clk="$clk" \
    -v t0="$start" -v t1="$end" -v rate="$rate" -v transport="$transport" 'BEGIN {
  secs = t1 - t0; cpu_us = ticks / clk * 1e6
  printf "transport %s, offered %d calls/s: %d ok, %d failed, %d retransmissions in %.1f s (%.0f calls/s)\n",
         transport, rate, ok, failed, retrans, secs, ok / secs
  if (ok > 0) printf "Tandem CPU: %.2f s, %.1f us per call, %.1f ms per 1000 calls\n", cpu_us / 1e6, cpu_us / ok, cpu_us / ok
}'
