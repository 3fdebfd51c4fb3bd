#!/usr/bin/env bash
# The whole test suite: set-up, the shared plugin and fixture build, then every test.
# Closes with one line totalling every test binary's results.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
"$ROOT/scripts/setup.sh"
"$ROOT/scripts/build-plugins.sh"
say "cargo test"
log="$TARGET/test-output.log"
cargo test --workspace --release "$@" 2>&1 | tee "$log"
awk '/^test result:/ { passed += $4; failed += $6; ignored += $8 }
     END { printf "tests: %d passed, %d failed, %d skipped\n", passed, failed, ignored }' "$log"
