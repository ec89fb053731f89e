#!/usr/bin/env bash
# Issue 15: logtail into Elasticsearch beside rsyslog's omelasticsearch. The same `steady`
# workload (the same generated lines, senders, rate and count) three ways, each into a fresh
# osmem-server (index `loadtest`), read back with `_search` by the harness:
#   rsyslog     imtcp → omelasticsearch (bulkmode, a JSON template like logtail's record)
#   direct      logtail's gateway with its Elasticsearch sink (one process, the fair match)
#   kafka       logtail's gateway → Kafka (tansu) → logtail indexer → osmem-server
# each RUNS times (default 3) under `nice -n 19`, then the median of each figure and the
# side-by-side tables of the median runs (B / A ratios).
#
#   usage: loadtest/compare-es.sh [LOADTEST OPTIONS...]
#   e.g.   RUNS=3 loadtest/compare-es.sh --rate 500 --count 15000
#
# Needs rsyslog-elasticsearch (installed here with apt when missing; services are not started:
# the harness runs its own rsyslogd), osmem-server and tansu (tests/run.sh installs both), and a
# release build (done here). A failed check (loss, duplicates, p99) is a result to show, not a
# reason to stop: the table says which runs failed what.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-target/loadtest-compare-es}
runs=${RUNS:-3}
mkdir -p "$out"

loadtest/install-rsyslog.sh omelasticsearch.so rsyslog-elasticsearch
echo "rsyslog: $(rsyslogd -v | head -1)"

nice -n 19 cargo build --release --locked --quiet --bin logtail --bin logtail-loadtest
loadtest=target/release/logtail-loadtest

run() { # NAME ARGS...
  local name=$1; shift
  echo "== $name (load average $(cut -d' ' -f1-3 /proc/loadavg))"
  local status=0
  nice -n 19 "$loadtest" steady --report "$out/$name.json" --max-p99-ms 5000 "$@" || status=$?
  # 1: a delivery check failed; 3: only latency did. Both are results; 2 (an error) is not.
  [ "$status" -eq 0 ] || [ "$status" -eq 1 ] || [ "$status" -eq 3 ]
}

for i in $(seq 1 "$runs"); do
  run "rsyslog-$i" --target rsyslog --sink elasticsearch-direct "$@"
  run "direct-$i" --target logtail --sink elasticsearch-direct "$@"
  run "kafka-$i" --target logtail --sink elasticsearch "$@"
done

# The median of each figure over the runs of one setup, and the run closest to the median of
# lines per CPU-second (the one the side-by-side tables show).
python3 - "$out" "$runs" <<'EOF'
import json, statistics, sys
out, runs = sys.argv[1], int(sys.argv[2])
def figures(r):
    s = r["steps"][0]
    cpu = s["gateway"]["cpu_seconds"] + ((s.get("indexer") or {}).get("cpu_seconds") or 0)
    idx = s.get("index") or {}
    return {
        "sent": s["sent"], "delivered": s["delivered"], "lost": s["lost"],
        "dup (marker)": s["duplicated"], "dup (_id)": idx.get("duplicate_ids", 0),
        "p50 ms": s["latency"]["p50_ms"], "p99 ms": s["latency"]["p99_ms"],
        "max ms": s["latency"]["max_ms"],
        "gateway CPU s": s["gateway"]["cpu_seconds"],
        "indexer CPU s": (s.get("indexer") or {}).get("cpu_seconds") or 0,
        "lines/CPU-s": s["delivered"] / cpu if cpu else 0,
        "peak RSS MiB": (s["gateway"]["peak_rss_kib"] + ((s.get("indexer") or {}).get("peak_rss_kib") or 0)) / 1024,
        "broker CPU s": (r.get("broker") or {}).get("cpu_seconds") or 0,
        "osmem CPU s": (s.get("search_server") or {}).get("cpu_seconds") or 0,
        "load avg": float(r["machine"]["load_average_at_start"].split()[0]),
        "passed": r["passed"],
    }
keys = None
print(f"\nmedians of {runs} runs (lines/CPU-s: delivered / (gateway + indexer) CPU)")
for setup in ["rsyslog", "direct", "kafka"]:
    rs = [figures(json.load(open(f"{out}/{setup}-{i}.json"))) for i in range(1, runs + 1)]
    keys = [k for k in rs[0] if k != "passed"]
    med = {k: statistics.median(r[k] for r in rs) for k in keys}
    print(f"{setup:8}", "  ".join(f"{k} {med[k]:,.1f}" for k in keys),
          f" passed {sum(r['passed'] for r in rs)}/{runs}")
    print(f"{'':8} lines/CPU-s per run:", ", ".join(f"{r['lines/CPU-s']:,.0f}" for r in rs))
    best = min(range(runs), key=lambda i: abs(rs[i]["lines/CPU-s"] - med["lines/CPU-s"]))
    open(f"{out}/{setup}-median.txt", "w").write(f"{out}/{setup}-{best + 1}.json")
EOF

echo
echo "== the median runs: A = rsyslog omelasticsearch, B = logtail's gateway with its ES sink"
"$loadtest" compare "$(cat "$out/rsyslog-median.txt")" "$(cat "$out/direct-median.txt")"
echo
echo "== A = rsyslog omelasticsearch, B = logtail gateway → Kafka → indexer"
"$loadtest" compare "$(cat "$out/rsyslog-median.txt")" "$(cat "$out/kafka-median.txt")"
echo
echo "reports and charts: $out/"
