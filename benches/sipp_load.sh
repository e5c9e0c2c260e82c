#!/usr/bin/env bash
# Drives SIPp's built-in `uac` against Tandem's echo at a fixed rate and reports calls per second,
# failed calls, retransmissions and Tandem's CPU time per call (utime + stime from /proc). Then,
# in the same run and with the same SIPp flags, the same load through Kamailio as a stateful proxy
# (one worker per transport) to a SIPp UAS: what a user would run instead, measured the same way.
#
#   benches/sipp_load.sh [RATE] [SECONDS] [TRANSPORT]     e.g. benches/sipp_load.sh 6000 10 u1
#
# TANDEM_BIN runs another build (e.g. an older one, for a before/after) instead of building this one.
# KAMAILIO=no leaves Kamailio out. Everything runs on loopback on private ports and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
rate=${1:-6000}
seconds=${2:-10}
transport=${3:-u1}
calls=$((rate * seconds))
port=${SIP_PORT:-25060}
kamailio=${KAMAILIO:-yes}

command -v sipp >/dev/null || { echo "sipp is missing: apt-get install sip-tester" >&2; exit 1; }
if [ "$kamailio" != no ] && ! command -v kamailio >/dev/null; then
  echo "kamailio is missing: apt-get install kamailio (or KAMAILIO=no)" >&2
  exit 1
fi
bin=${TANDEM_BIN:-target/release/tandem}
[ -n "${TANDEM_BIN:-}" ] || cargo build --release --bin tandem >/dev/null 2>&1

work=$(mktemp -d)
pids=()
# Whether a process runs (an exited child waiting to be reaped does not).
alive() { local state; state=$(ps -o stat= -p "$1") || return 1; [[ $state != Z* ]]; }
stop_all() {
  local pid
  for pid in "${pids[@]}"; do
    # A Kamailio that has just been overloaded can miss a SIGTERM and keep the bench's ports,
    # so the signal is repeated until the process is gone (at most 10 s, then SIGKILL).
    for _ in $(seq 20); do
      alive "$pid" || break
      kill "$pid" 2>/dev/null || break
      sleep 0.5
      alive "$pid" || break
    done
    ! alive "$pid" || kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  pids=()
}
trap 'stop_all; rm -rf "$work"' EXIT

clk=$(getconf CLK_TCK)
# CPU ticks (utime + stime) of the given processes.
cpu() { for pid in "$@"; do awk '{print $14 + $15}' "/proc/$pid/stat"; done | awk '{t += $1} END {print t}'; }

# drive NAME TARGET PIDS...: SIPp `uac` at the rate against TARGET; prints the result and the CPU
# per call of PIDS over the run.
drive() {
  local name=$1 target=$2
  shift 2
  local before after start end last ok failed retrans
  before=$(cpu "$@")
  start=$(date +%s.%N)
  sipp "$target" -sn uac -s echo -t "$transport" -r "$rate" -m "$calls" -l $((rate * 4)) \
    -i 127.0.0.1 -p $((port + 1)) -mp $((port + 2)) -buff_size 4194304 -nostdin \
    -timeout $((seconds * 3 + 30))s -trace_stat -fd 1 -stf "$work/stat.csv" >/dev/null 2>&1 || true
  end=$(date +%s.%N)
  after=$(cpu "$@")
  last=$(tail -n 1 "$work/stat.csv")
  rm -f "$work/stat.csv"
  ok=$(echo "$last" | cut -d';' -f16)
  failed=$(echo "$last" | cut -d';' -f18)
  retrans=$(echo "$last" | cut -d';' -f58)
  awk -v name="$name" -v ok="$ok" -v failed="$failed" -v retrans="$retrans" \
      -v ticks=$((after - before)) -v clk="$clk" -v t0="$start" -v t1="$end" -v rate="$rate" \
      -v transport="$transport" 'BEGIN {
    secs = t1 - t0; cpu_us = ticks / clk * 1e6
    printf "%s, transport %s, offered %d calls/s: %d ok, %d failed, %d retransmissions in %.1f s (%.0f calls/s)\n",
           name, transport, rate, ok, failed, retrans, secs, ok / secs
    if (ok > 0) printf "%s CPU: %.2f s, %.1f us per call\n", name, cpu_us / 1e6, cpu_us / ok
  }'
}

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
pids+=("$tandem_pid")
sleep 0.5
kill -0 "$tandem_pid" 2>/dev/null || { echo "tandem did not start:" >&2; cat "$work/tandem.log" >&2; exit 1; }
drive Tandem "127.0.0.1:$port" "$tandem_pid"
stop_all

[ "$kamailio" != no ] || exit 0
# Kamailio 5 as a transaction-stateful proxy: every request to the SIPp UAS, dialogs record-routed.
# One worker per transport (`children=1`, `tcp_children=1`, `-n 1`).
uas_port=$((port + 10))
# It reaches the SIPp UAS over UDP, and takes the calls on the bench's transport too.
listen="listen=udp:127.0.0.1:$port"
case $transport in t*) listen="$listen
listen=tcp:127.0.0.1:$port" ;; esac
cat >"$work/kamailio.cfg" <<CFG
#!KAMAILIO
debug=1
log_stderror=yes
children=1
tcp_children=1
$listen
dns=no
rev_dns=no
auto_aliases=no
alias="127.0.0.1:$port"
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "maxfwd.so"
loadmodule "pv.so"
loadmodule "siputils.so"
loadmodule "textops.so"
request_route {
    if (!mf_process_maxfwd_header("10")) { sl_send_reply("483", "Too Many Hops"); exit; }
    if (has_totag()) {
        if (!loose_route()) { \$du = "sip:127.0.0.1:$uas_port"; }
        t_relay();
        exit;
    }
    if (is_method("CANCEL")) { if (t_check_trans()) t_relay(); exit; }
    if (is_method("INVITE")) record_route();
    \$du = "sip:127.0.0.1:$uas_port";
    if (!t_relay()) sl_reply_error();
}
CFG
sipp -sn uas -i 127.0.0.1 -p "$uas_port" -mp $((port + 12)) -buff_size 4194304 -nostdin \
  >/dev/null 2>&1 &
pids+=("$!")
kamailio -f "$work/kamailio.cfg" -DD -E -m 1024 -M 32 -x tlsf -X tlsf -n 1 -P "$work/kamailio.pid" \
  >"$work/kamailio.log" 2>&1 &
kamailio_pid=$!
pids+=("$kamailio_pid")
sleep 2
kill -0 "$kamailio_pid" 2>/dev/null || { cat "$work/kamailio.log" >&2; exit 1; }
# Kamailio's workers are children of its main process.
mapfile -t workers < <(ps --ppid "$kamailio_pid" -o pid= | tr -d ' ')
drive Kamailio "127.0.0.1:$port" "$kamailio_pid" "${workers[@]}"
