#!/usr/bin/env bash
# rsyslog and logtail side by side: the same workload (logtail-loadtest `steady`: the same
# generated lines, senders, rate and duration) through Debian's rsyslog (imtcp/imudp → omkafka)
# and through logtail, both producing to the same kind of tansu broker, then both reports and
# their ratio (lines per CPU-second, latency, loss). Then the same with each gateway's local
# output (rsyslog omfile, logtail's store).
#
#   usage: loadtest/compare.sh [LOADTEST OPTIONS...]
#   e.g.   loadtest/compare.sh --rate 20000 --duration 20s
#          loadtest/compare.sh --rate 50000 --duration 20s --transport udp
#
# Installs rsyslog and rsyslog-kafka with apt when missing (services are not started: the
# harness runs its own rsyslogd on a generated config). Needs tansu (tests/run.sh installs it)
# and a release build (done here).
#
# About Kafka: Debian 12's rsyslog-kafka links librdkafka 2.0.2, which cannot parse tansu 0.6's
# ApiVersions v3 response ("ApiVersionRequest failed: Local: Read underflow: probably due to
# broker version < 0.10"; api.version.request=false and broker.version.fallback do not help,
# 2.0.2 asks anyway). So in both runs the clients reach the broker through the harness's TCP
# proxy, which drops the optional top-level tagged fields of that one response and copies
# everything else byte for byte (loadtest/broker.rs, fix_api_versions). Set KAFKA=0 to skip the
# Kafka comparison and compare local outputs only.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-target/loadtest-compare}
mkdir -p "$out"

loadtest/install-rsyslog.sh omkafka.so rsyslog-kafka
echo "rsyslog: $(rsyslogd -v | head -1)"
echo "librdkafka used by omkafka: $(dpkg -s librdkafka1 2>/dev/null | awk '/^Version/{print $2}')"

cargo build --release --quiet
loadtest=target/release/logtail-loadtest

run() { # NAME ARGS...
  local name=$1; shift
  echo "== $name"
  # A failed check (exit 1) is a result to show, not a reason to stop.
  "$loadtest" steady --report "$out/$name.json" "$@" || [ $? -eq 1 ]
}

if [ "${KAFKA:-1}" = 1 ]; then
  run rsyslog-kafka --target rsyslog --sink kafka --broker-proxy "$@"
  run logtail-kafka --target logtail --sink kafka --broker-proxy "$@"
fi
run rsyslog-local --target rsyslog --sink local "$@"
run logtail-local --target logtail --sink local "$@"

echo
if [ "${KAFKA:-1}" = 1 ]; then
  echo "== to Kafka (A = rsyslog omkafka, B = logtail)"
  "$loadtest" compare "$out/rsyslog-kafka.json" "$out/logtail-kafka.json"
  echo
fi
echo "== local output (A = rsyslog omfile, B = logtail store)"
"$loadtest" compare "$out/rsyslog-local.json" "$out/logtail-local.json"
echo
echo "reports and charts: $out/"
