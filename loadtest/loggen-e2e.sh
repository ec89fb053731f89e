#!/usr/bin/env bash
# End-to-end throughput of the gateway with syslog-ng's loggen as the sender: starts a release
# gateway (TCP and UDP on 127.0.0.1:5514, local store in a temp dir), runs loggen with the given
# arguments, waits until the sink has written everything received, then prints the gateway's
# counters, its CPU seconds (from /proc), peak RSS, and lines per CPU-second; finally stops it
# with SIGTERM and counts the records in the store.
#
#   usage: [KAFKA=HOST:PORT] loadtest/loggen-e2e.sh GATEWAY_CPUS SENDER_CPUS LOGGEN_ARGS...
#
# With TLS=1, the TCP listener speaks TLS (RFC 5425) with a certificate made for the run by
# openssl (give loggen --use-ssl instead of -S):
#   TLS:   TLS=1 loadtest/loggen-e2e.sh 0 1 --use-ssl -s 200 -n 2000000 -r 100000000 127.0.0.1 5514
# With KAFKA set, the sink is Kafka (topic "logs" on that broker) instead of the local store,
# "written" means acknowledged by Kafka, and the delivery latency summary is printed.
#   TCP:   loadtest/loggen-e2e.sh 0 1 -i -S -s 200 -n 5000000 -r 100000000 127.0.0.1 5514
#   UDP:   loadtest/loggen-e2e.sh 0 1 -i -D -s 200 -n 3000000 -r 300000 127.0.0.1 5514
# With TAIL=QUERY set (empty for every record), a live-tail client follows the whole run
# (`curl -N .../api/v1/tail?q=QUERY`, on the sender's CPUs); the records it received and those
# it was told were dropped are printed at the end.
#   TAIL:  TAIL='severity:err' loadtest/loggen-e2e.sh 0 1 -i -S -s 200 -n 2000000 -r 100000 127.0.0.1 5514
#
# Needs: a release build (cargo build --release), taskset, curl, bc, and loggen
# (../shared/tools/install-loggen.sh installs it into ~/.local/loggen).
set -euo pipefail
cd "$(dirname "$0")/.."
gateway_cpus=$1; sender_cpus=$2; shift 2
loggen=${LOGGEN:-$HOME/.local/loggen/loggen}
# LOGTAIL=path/to/logtail runs another build of the gateway (to compare before and after).
logtail=${LOGTAIL:-target/release/logtail}
[ -x "$loggen" ] || loggen=$(../shared/tools/install-loggen.sh)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ -n "${TLS:-}" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$work/gateway.key" -out "$work/gateway.pem" 2>/dev/null
fi
cat > "$work/gateway.toml" <<TOML
data_dir = "$work/data"
[[listen]]
type = "tcp"
address = "127.0.0.1:5514"
$([ -n "${TLS:-}" ] && printf '[listen.tls]\ncert_file = "%s"\nkey_file = "%s"\n' "$work/gateway.pem" "$work/gateway.key")
[[listen]]
type = "udp"
address = "127.0.0.1:5514"
[sink.store]
max_total_bytes = 20000000000
TOML
written_series=logtail_sink_records_total
if [ -n "${KAFKA:-}" ]; then
  cat >> "$work/gateway.toml" <<TOML
[sink]
type = "kafka"
[sink.kafka]
bootstrap_servers = "$KAFKA"
TOML
  written_series=logtail_kafka_delivered_records_total
fi
metrics() { curl -s 127.0.0.1:9100/metrics; }
taskset -c "$gateway_cpus" "$logtail" serve --config "$work/gateway.toml" 2>"$work/gateway.log" &
gateway=$!
sleep 0.5
hz=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14+$15}' "/proc/$gateway/stat"; }
if [ -n "${TAIL+set}" ]; then
  taskset -c "$sender_cpus" curl -sN --get --data-urlencode "q=$TAIL" \
    127.0.0.1:9100/api/v1/tail >"$work/tail.out" &
  tail_client=$!
  sleep 0.3
fi
ticks0=$(cpu_ticks); start=$(date +%s.%N)
taskset -c "$sender_cpus" "$loggen" "$@" 2>&1 | tail -1
previous=-1
while :; do
  written=$(metrics | awk -v s="$written_series" '$1 == s || index($1, s "{") == 1 {print $2}')
  received=$(metrics | awk '/^logtail_received_lines_total/{s+=$2} END{print s}')
  [ "$written" = "$received" ] && [ "$written" = "$previous" ] && break
  previous=$written; sleep 0.2
done
end=$(date +%s.%N); ticks1=$(cpu_ticks)
cpu=$(echo "($ticks1-$ticks0)/$hz" | bc -l)
rss=$(awk '/VmHWM/{print $2}' "/proc/$gateway/status")
if [ -n "${TAIL+set}" ]; then
  sleep 0.5; kill "$tail_client"; wait "$tail_client" || true
  printf 'tail %q: %d records received, %d reported dropped\n' "$TAIL" \
    "$(grep -c '^data: {"[^d]' "$work/tail.out" || true)" \
    "$(awk -F'[:}]' '/^data: \{"dropped"/{s+=$3} END{print s+0}' "$work/tail.out")"
fi
metrics | grep -E '^logtail_(received_lines|dropped|sink_records|batch_latency|kafka_delivered|kafka_delivery_latency|wal_spilled)' | grep -v ' 0$' || true
kill -TERM "$gateway"; wait "$gateway"
printf 'wall %.2f s (until all written), gateway CPU %.2f s, peak RSS %d KiB, %.0f lines per CPU-second\n' \
  "$(echo "$end-$start" | bc -l)" "$cpu" "$rss" "$(echo "$written/$cpu" | bc -l)"
[ -n "${KAFKA:-}" ] || echo "records in the store: $("$logtail" read --dir "$work/data/store" | wc -l)"
