#!/usr/bin/env bash
# The benchmarks that docs/BENCHMARKS.md records:
#   1. criterion: the per-message call, FFI against native (runtime/benches/call.rs);
#   2. throughput: `pfn run` with the exclamation plugin against `sed 's/$/!/'` over the same
#      1,000,000 lines of 64 bytes; the outputs must be byte-identical;
#   3. the worker on embedded topics: throughput and swap pause (runtime/benches/worker.rs).
# Usage: scripts/bench.sh [--skip-criterion]   (skips 1 and 3, the cargo benches)
# Environment: BENCH_LINES (default 1000000), BENCH_RUNS (runs per side, default 3).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

LINES="${BENCH_LINES:-1000000}"
RUNS="${BENCH_RUNS:-3}"
OUT="$TARGET/bench"
PFN="$TARGET/release/pfn"
PLUGIN="$PLUGINS_OUT/libexclamation.so"
export PFN_PLUGIN_CACHE="${PFN_PLUGIN_CACHE:-$TARGET/plugin-cache}"
mkdir -p "$OUT"

say "machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
"$ROOT/scripts/build-plugins.sh"

if [ "${1:-}" != "--skip-criterion" ]; then
    say "criterion: the per-message call (cargo bench -p pfn --bench call)"
    cargo bench -p pfn --bench call
    say "the worker on embedded topics (cargo bench -p pfn --bench worker)"
    cargo bench -p pfn --bench worker
fi

input="$OUT/lines-$LINES.txt"
if [ ! -f "$input" ] || [ "$(wc -l < "$input")" -ne "$LINES" ]; then
    say "generating $input"
    # 64 bytes a line: "message-NNNNNNN-" padded with dots to 63 characters, and the newline.
    awk -v n="$LINES" 'BEGIN {
        pad = sprintf("%47s", ""); gsub(/ /, ".", pad)
        for (i = 0; i < n; i++) printf "message-%07d-%s\n", i, pad
    }' > "$input.tmp"
    mv "$input.tmp" "$input"
fi

# Runs "$@" with stdout to $1's file, setting WALL_US and RSS_KIB ("-" when unknown).
# Peak RSS comes from /usr/bin/time when it is installed, else from pfn's own summary.
measure() {
    local stdout="$1" start end
    shift
    rm -f "$OUT/rss"
    start=$(date +%s%N)
    if [ -x /usr/bin/time ]; then
        /usr/bin/time -f '%M' -o "$OUT/rss" "$@" > "$stdout" 2> "$OUT/stderr" || {
            cat "$OUT/stderr" >&2
            echo "failed: $*" >&2
            exit 1
        }
    else
        "$@" > "$stdout" 2> "$OUT/stderr" || {
            cat "$OUT/stderr" >&2
            echo "failed: $*" >&2
            exit 1
        }
    fi
    end=$(date +%s%N)
    WALL_US=$(( (end - start) / 1000 ))
    RSS_KIB=$(tail -n 1 "$OUT/rss" 2>/dev/null || true)
    if [ -z "$RSS_KIB" ]; then
        RSS_KIB=$(sed -n 's/.*peak RSS \([0-9]*\) KiB.*/\1/p' "$OUT/stderr")
    fi
    RSS_KIB="${RSS_KIB:--}"
}

pfn_out="$OUT/pfn-out.txt"
sed_out="$OUT/sed-out.txt"
dead="$OUT/pfn-dead.jsonl"
pfn_walls=() sed_walls=() pfn_rss=() sed_rss=()
for run in $(seq 1 "$RUNS"); do
    say "run $run/$RUNS: sed, then pfn run"
    rm -f "$sed_out" "$pfn_out" "$dead"
    LC_ALL=C measure "$sed_out" sed 's/$/!/' "$input"
    sed_walls+=("$WALL_US") sed_rss+=("$RSS_KIB")
    measure /dev/null "$PFN" run --plugin "$PLUGIN" --input "$input" --output "$pfn_out" \
        --dead-letter "$dead" --log-level warn
    pfn_walls+=("$WALL_US") pfn_rss+=("$RSS_KIB")
    grep -q "$LINES messages: $LINES outputs, 0 filtered, 0 dead-lettered" "$OUT/stderr" || {
        cat "$OUT/stderr" >&2
        echo "pfn run did not turn every line into an output" >&2
        exit 1
    }
    if ! cmp "$pfn_out" "$sed_out"; then
        echo "MISMATCH: $pfn_out and $sed_out differ (run $run)" >&2
        exit 1
    fi
done
say "outputs byte-identical in all $RUNS runs ($(wc -c < "$pfn_out") bytes)"

# The smallest and the median of the arguments.
best() { printf '%s\n' "$@" | sort -n | head -n 1; }
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
secs() { awk -v us="$1" 'BEGIN { printf "%.3f s", us / 1e6 }'; }
rate() { awk -v us="$1" -v n="$LINES" 'BEGIN { printf "%.2f M", n / us }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", a / b }'; }

pb=$(best "${pfn_walls[@]}") pm=$(median "${pfn_walls[@]}")
sb=$(best "${sed_walls[@]}") sm=$(median "${sed_walls[@]}")
pfn_peak=$(printf '%s\n' "${pfn_rss[@]}" | sort -n | tail -n 1)
sed_peak=$(printf '%s\n' "${sed_rss[@]}" | sort -n | tail -n 1)
echo
echo "$LINES lines of 64 bytes, $RUNS runs per side; walls in us: pfn ${pfn_walls[*]}; sed ${sed_walls[*]}"
echo
echo "| command | best wall | median wall | lines/s (best) | lines/s (median) | peak RSS (max of runs) |"
echo "|---|---|---|---|---|---|"
echo "| pfn run (exclamation) | $(secs "$pb") | $(secs "$pm") | $(rate "$pb") | $(rate "$pm") | $pfn_peak KiB |"
echo "| sed 's/\$/!/' (LC_ALL=C) | $(secs "$sb") | $(secs "$sm") | $(rate "$sb") | $(rate "$sm") | $sed_peak KiB |"
echo "| pfn / sed | $(ratio "$pb" "$sb") | $(ratio "$pm" "$sm") | | | |"
