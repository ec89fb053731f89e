#!/usr/bin/env bash
# Runs the fuzz targets for SECONDS each (default 30), one after the other, and prints per
# target the executions, coverage (libFuzzer's `cov`: edges, `ft`: features) and corpus size.
# Exits non-zero when a target finds a crash (the input is in fuzz/artifacts/TARGET/).
#
#   fuzz/run.sh [SECONDS] [TARGET...]
#
# Installs cargo-fuzz when missing, writes the seed corpora (examples/fuzz_seeds.rs) into
# fuzz/corpus/ (kept between runs, not committed), and builds the targets with libFuzzer on the
# stable toolchain (RUSTC_BOOTSTRAP=1 allows the sanitizer-coverage flags cargo-fuzz passes).
# No sanitizer: the code under test is safe Rust, where a memory error cannot happen and ASan
# would only halve the executions; debug assertions and overflow checks are on.
set -euo pipefail

seconds=${1:-30}
shift || true
cd "$(dirname "$0")/.."
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --version 0.13.2

all=(framing parse agent_protocol store_recovery wal_recovery checkpoint config query)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

cargo run --quiet --locked --example fuzz_seeds -- fuzz/corpus
cargo fuzz build -s none
mkdir -p fuzz/logs
failed=()
for target in "${targets[@]}"; do
    log=fuzz/logs/$target.log
    if ! cargo fuzz run -s none "$target" -- -max_total_time="$seconds" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
        failed+=("$target")
        echo "fuzz $target: FAILED, see $log and fuzz/artifacts/$target/"
        grep -A30 -m1 "panicked\|ERROR: libFuzzer" "$log" || tail -30 "$log"
        continue
    fi
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    last=$(grep -E '^#[0-9]+' "$log" | tail -1)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")
    echo "fuzz $target: ${seconds}s, $execs executions, cov $cov, ft $ft, corpus $corp, no crash"
done
[ ${#failed[@]} -eq 0 ] || { echo "fuzz: crashes in ${failed[*]}"; exit 1; }
