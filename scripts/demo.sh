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

say "pfn worker: exclamation, router and threshold-alert on embedded topics, fed and read from outside"
worker_dir="$work/worker"
rm -rf "$worker_dir" && mkdir -p "$worker_dir/plugins" "$worker_dir/functions"
for plugin in exclamation router threshold_alert; do
    cp "$PLUGINS_OUT"/lib$plugin.* "$worker_dir/plugins/"
done
cat > "$worker_dir/functions/shout.toml" <<'SPEC'
name = "shout"
plugin = "exclamation"
inputs = ["words"]
output = "shouts"
parallelism = 2
SPEC
cat > "$worker_dir/functions/router.toml" <<'SPEC'
name = "router"
plugin = "router"
inputs = ["events"]
[user_config]
default_topic = "other"
routes = [{ field = "type", equals = "payment", topic = "payments" },
          { field = "type", equals = "refund", topic = "refunds" }]
SPEC
cat > "$worker_dir/functions/alert.toml" <<'SPEC'
name = "alert"
plugin = "threshold-alert"
inputs = ["temperatures"]
output = "alerts"
[user_config]
threshold = 30
window_ms = 60000
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

for topic in payments refunds other router-DLQ; do "$PFN" topics create-subscription "$topic" -s demo; done
say "router over examples/events.jsonl: each event published to the topic its type picks"
"$PFN" topics produce events --input-format json < "$ROOT/examples/events.jsonl"
for topic in payments refunds other router-DLQ; do
    say "pfn topics consume $topic -s demo"
    "$PFN" topics consume "$topic" -s demo --idle-timeout-ms 1000
done

"$PFN" topics create-subscription alerts -s demo
say "threshold-alert over examples/temperatures.jsonl (threshold 30, one-minute average per sensor)"
"$PFN" topics produce temperatures --input-format json < "$ROOT/examples/temperatures.jsonl"
say "pfn topics consume alerts -s demo: one alert per crossing, not one per reading above"
"$PFN" topics consume alerts -s demo --idle-timeout-ms 1000
say "pfn functions querystate public/default/alert --key window/s1"
"$PFN" functions querystate public/default/alert --key window/s1
kill -TERM "$worker_pid"
wait "$worker_pid"
trap - EXIT
