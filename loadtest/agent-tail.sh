#!/usr/bin/env bash
# Lines per CPU-second of `logtail agent` tailing one fast-growing file of 200-byte lines.
# Starts a release agent pinned to AGENT_CPUS, collecting one file (new, so read from its
# beginning), then a writer pinned to WRITER_CPUS that appends LINES lines as fast as it can
# (`yes | head`); waits until the agent shipped every line, then prints the agent's CPU seconds
# (utime + stime of all its threads, from /proc), its peak RSS, wall time, and lines per
# CPU-second; finally stops it with SIGTERM.
#
#   usage: loadtest/agent-tail.sh AGENT_CPUS WRITER_CPUS LINES [file|gateway|syslog-tcp]
#
#   file        (default) the `file` shipper, raw, to /dev/null: tailing (reads, line
#               splitting, batches, the shipping thread, checkpoints) and nothing else. Done
#               when the checkpoint reaches the end of the file.
#   gateway     the `gateway` shipper (acknowledged agent protocol: RFC 5424 formatting, lz4,
#               CRC-32C) to a release gateway's agent listener (blackhole sink) pinned to
#               WRITER_CPUS too. Done when the checkpoint (acknowledged bytes) reaches the end.
#   syslog-tcp  the `syslog-tcp` shipper to the same gateway's TCP listener: RFC 5424 and
#               octet counting over TCP, not acknowledged end to end.
#   kafka       the `kafka` shipper straight to the broker at $KAFKA (HOST:PORT, topic "logs"
#               must exist): parse, JSON encode and produce in the agent. Done when the
#               checkpoint (bytes Kafka acknowledged) reaches the end.
#
#   loadtest/agent-tail.sh 0 1 5000000 file
#
# Needs: a release build (cargo build --release), taskset; curl for `gateway`.
set -euo pipefail
cd "$(dirname "$0")/.."
agent_cpus=$1; writer_cpus=$2; lines=$3; mode=${4:-file}
work=$(mktemp -d /dev/shm/agent-tail.XXXXXX)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
line=$(printf '2026-11-21T04:00:00.000000Z web1 app[4242]: GET /api/v1/items?id=42 200 0.003 %0121d' 0)
[ ${#line} -eq 199 ] || { echo "line is ${#line} bytes, not 199" >&2; exit 1; }
if [ "$mode" = gateway ] || [ "$mode" = syslog-tcp ]; then
  cat > "$work/gateway.toml" <<TOML
data_dir = "$work/data"
[[listen]]
type = "tcp"
address = "127.0.0.1:5515"
[[listen]]
type = "agent"
address = "127.0.0.1:5516"
[sink]
type = "blackhole"
[metrics]
address = "127.0.0.1:9101"
TOML
  taskset -c "$writer_cpus" target/release/logtail serve --config "$work/gateway.toml" 2>"$work/gateway.log" &
  pids+=($!)
  if [ "$mode" = gateway ]; then
    ship='type = "gateway"
address = "127.0.0.1:5516"'
  else
    ship='type = "syslog-tcp"
address = "127.0.0.1:5515"'
  fi
  shipped() { curl -s 127.0.0.1:9101/metrics | awk '/^logtail_sink_records_total/{s+=$2} END{print s+0}'; }
  sleep 0.5
elif [ "$mode" = kafka ]; then
  : "${KAFKA:?set KAFKA=HOST:PORT of a broker with a topic \"logs\"}"
  ship="type = \"kafka\"
[ship.kafka]
bootstrap_servers = \"$KAFKA\""
else
  ship='type = "file"
path = "/dev/null"'
fi
if [ "$mode" = file ] || [ "$mode" = kafka ]; then
  # Everything is shipped once the checkpoint (acknowledged bytes) reaches the end of the file.
  shipped() { awk '$1 ~ /^[0-9]+$/ {print int($5 / 200)}' "$work/state/checkpoints" 2>/dev/null || echo 0; }
fi
cat > "$work/agent.toml" <<TOML
data_dir = "$work/state"
[ship]
$ship
[[collect]]
name = "app"
paths = ["$work/app.log"]
TOML
taskset -c "$agent_cpus" target/release/logtail agent --config "$work/agent.toml" 2>"$work/agent.log" &
agent=$!; pids+=($agent)
sleep 0.5
hz=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14+$15}' "/proc/$agent/stat"; }
sys_ticks() { awk '{print $15}' "/proc/$agent/stat"; }
ticks0=$(cpu_ticks); sys0=$(sys_ticks); start=$(date +%s.%N)
taskset -c "$writer_cpus" bash -c "yes '$line' | head -n $lines >> '$work/app.log'"
written=$(date +%s.%N)
while [ "$(shipped)" -lt "$lines" ]; do sleep 0.05; done
end=$(date +%s.%N); ticks1=$(cpu_ticks); sys1=$(sys_ticks)
cpu=$(echo "($ticks1 - $ticks0) / $hz" | bc -l)
rss=$(awk '/VmHWM/{print $2}' "/proc/$agent/status")
printf 'mode %s: %d lines of 200 bytes; writer done after %.2f s, agent done after %.2f s\n' \
  "$mode" "$lines" "$(echo "$written - $start" | bc -l)" "$(echo "$end - $start" | bc -l)"
printf 'agent CPU %.2f s (%.2f s in the kernel), peak RSS %d KiB: %.2f M lines per CPU-second\n' \
  "$cpu" "$(echo "($sys1 - $sys0) / $hz" | bc -l)" "$rss" "$(echo "$lines / $cpu / 1000000" | bc -l)"
kill -TERM "$agent"; wait "$agent" || true
grep -E "stopped:" "$work/agent.log" | sed 's/^.*INFO //'
