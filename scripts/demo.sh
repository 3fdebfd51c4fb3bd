#!/usr/bin/env bash
# The main job on one machine: build the example plugins, run them over sample input with
# `pfn run`, and show what came out.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
"$ROOT/scripts/setup.sh"
"$ROOT/scripts/build-plugins.sh"
PFN="$TARGET/release/pfn"
export PFN_PLUGIN_CACHE="${PFN_PLUGIN_CACHE:-$TARGET/plugin-cache}"
work="$TARGET/demo"
mkdir -p "$work"

say "pfn plugin inspect $PLUGINS_OUT/libexclamation.so"
"$PFN" plugin inspect "$PLUGINS_OUT/libexclamation.so"

say "exclamation over three lines from stdin"
printf 'hello\npulsar\nfunctions\n' | "$PFN" run --plugin "$PLUGINS_OUT/libexclamation.so" --log-level warn

say "order-summary over examples/orders.jsonl (one order has no lines: it is dead-lettered)"
"$PFN" run --plugin "$PLUGINS_OUT/liborder_summary.so" --input "$ROOT/examples/orders.jsonl" \
    --output "$work/summaries.jsonl" --log-level warn
say "$work/summaries.jsonl:"
cat "$work/summaries.jsonl"
say "$work/summaries.dead-letter.jsonl:"
cat "$work/summaries.dead-letter.jsonl"
