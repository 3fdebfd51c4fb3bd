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

say "pfn worker: exclamation on embedded topics, fed and read from outside"
worker_dir="$work/worker"
rm -rf "$worker_dir" && mkdir -p "$worker_dir/plugins" "$worker_dir/functions"
cp "$PLUGINS_OUT"/libexclamation.* "$worker_dir/plugins/"
cat > "$worker_dir/functions/shout.toml" <<'SPEC'
name = "shout"
plugin = "exclamation"
inputs = ["words"]
output = "shouts"
parallelism = 2
SPEC
export PFN_WORKER="$worker_dir/worker.sock"
"$PFN" worker --plugins-dir "$worker_dir/plugins" --functions "$worker_dir/functions" \
    --state-dir "$worker_dir" --log-level warn &
worker_pid=$!
trap 'kill "$worker_pid" 2>/dev/null || true' EXIT
until "$PFN" functions status >/dev/null 2>&1; do sleep 0.1; done
say "pfn functions trigger public/default/shout --value hello"
"$PFN" functions trigger public/default/shout --value hello
"$PFN" topics create-subscription shouts -s demo
printf 'stream\nfunctions\nin\nrust\n' | "$PFN" topics produce words
say "pfn topics consume shouts -s demo --count 4"
"$PFN" topics consume shouts -s demo --count 4
kill -TERM "$worker_pid"
wait "$worker_pid"
trap - EXIT
