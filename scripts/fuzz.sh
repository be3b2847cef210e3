#!/bin/sh
# fuzz.sh SECONDS: run each libFuzzer harness (build/fuzz/fuzz_*, from
# fuzz/fuzz_*.c) for SECONDS on its seed corpus fuzz/corpus/NAME (read only;
# what it learns goes to build/fuzz/corpus-NAME).  A crash stops the run with
# the input saved as build/fuzz/crash-NAME-*: make it a regression test in
# tests/c/ and fix it.  Called by `make fuzz` (long) and `make test` (short).
set -u
seconds=${1:-60}
cd "$(dirname "$0")/.." || exit 2
status=0
for bin in build/fuzz-meson/fuzz/fuzz_*; do
    [ -f "$bin" ] && [ -x "$bin" ] || continue
    name=$(basename "$bin" | sed 's/^fuzz_//')
    mkdir -p "build/fuzz/corpus-$name"
    seeds="fuzz/corpus/$name"
    [ -d "$seeds" ] || seeds=""
    printf 'fuzz %s: %ss ... ' "$name" "$seconds"
    # The short run of `make test` is deterministic (fixed seed, fixed number
    # of inputs), so CI fails only on a known input; `make fuzz` explores.
    if [ "$seconds" -le 5 ]; then limit="-seed=1 -runs=2000"; else limit="-max_total_time=$seconds"; fi
    if "$bin" $limit -max_len=65536 -timeout=10 -rss_limit_mb=1024 \
            -print_final_stats=1 -artifact_prefix="build/fuzz/crash-$name-" \
            "build/fuzz/corpus-$name" $seeds >"build/fuzz/$name.log" 2>&1; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "build/fuzz/$name.log")
        echo "ok, $runs inputs"
    else
        echo "FAILED (build/fuzz/$name.log, input saved as build/fuzz/crash-$name-*)"
        grep -m 3 -E "ERROR|runtime error|SUMMARY" "build/fuzz/$name.log"
        status=1
    fi
done
exit $status
