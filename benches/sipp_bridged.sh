#!/usr/bin/env bash
# Bridged calls through Tandem at a fixed rate: SIPp `uac` is the trunk, a SIPp UAS that
# registered as agent alice answers (with -rtp_echo). Reports calls per second, failed calls,
# retransmissions and Tandem's CPU per bridged call (both legs: two dialogs, two media legs).
#
#   benches/sipp_bridged.sh [RATE] [SECONDS]          e.g. benches/sipp_bridged.sh 1000 10
#
# Everything runs on loopback on private ports and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
rate=${1:-1000}
seconds=${2:-10}
calls=$((rate * seconds))
port=${SIP_PORT:-26060}
agent_port=$((port + 10))

command -v sipp >/dev/null || { echo "sipp is missing: apt-get install sip-tester" >&2; exit 1; }
cargo build --release --bin tandem >/dev/null 2>&1

work=$(mktemp -d)
agent_pid=""
trap 'kill "$tandem_pid" $agent_pid 2>/dev/null || true; cp "$work/tandem.log" /tmp/bridged-tandem.log 2>/dev/null; rm -rf "$work"' EXIT
cat >"$work/tandem.toml" <<TOML
[log]
level = "warn"
[sip]
listen = "127.0.0.1:$port"
max_calls = 1000000
[[sip.trunks]]
name = "bench"
addresses = ["127.0.0.1:$((port + 1))"]
[registrar]
algorithms = ["MD5"]
[[registrar.accounts]]
user = "alice"
password = "alice-secret"
[media]
rtp_port_min = 30000
rtp_port_max = 65000
[http]
listen = "127.0.0.1:0"
[store]
url = "sqlite://$work/tandem.db"
[files]
dir = "$work/files"
TOML
target/release/tandem run --config "$work/tandem.toml" 2>"$work/tandem.log" &
tandem_pid=$!
sleep 0.5
sipp "127.0.0.1:$port" -sf tests/scenarios/register_only.xml -s alice -au alice -ap alice-secret \
  -m 1 -p "$agent_port" -nostdin >/dev/null 2>&1
agent_pid=$(sipp "127.0.0.1:$port" -sf tests/scenarios/uas_agent.xml -rtp_echo -p "$agent_port" \
  -mp $((port + 20)) -buff_size 4194304 -nostdin -bg 2>&1 | sed -n 's/.*PID=\[\([0-9]*\)\].*/\1/p' || true)

clk=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$tandem_pid/stat"; }
before=$(cpu)
start=$(date +%s.%N)
sipp "127.0.0.1:$port" -sn uac -s alice -r "$rate" -m "$calls" -l $((rate * 4)) \
  -p $((port + 1)) -mp $((port + 30)) -buff_size 4194304 -nostdin -timeout $((seconds * 3 + 30))s \
  -trace_stat -fd 1 -stf "$work/stat.csv" >/dev/null 2>&1 || true
end=$(date +%s.%N)
after=$(cpu)

last=$(tail -n 1 "$work/stat.csv")
ok=$(echo "$last" | cut -d';' -f16)
failed=$(echo "$last" | cut -d';' -f18)
retrans=$(echo "$last" | cut -d';' -f58)
awk -v ok="$ok" -v failed="$failed" -v retrans="$retrans" -v ticks=$((after - before)) -v clk="$clk" \
    -v t0="$start" -v t1="$end" -v rate="$rate" 'BEGIN {
  secs = t1 - t0; cpu_us = ticks / clk * 1e6
  printf "bridged, offered %d calls/s: %d ok, %d failed, %d retransmissions in %.1f s (%.0f calls/s)\n",
         rate, ok, failed, retrans, secs, ok / secs
  if (ok > 0) printf "Tandem CPU: %.2f s, %.1f us per bridged call\n", cpu_us / 1e6, cpu_us / ok
}'
