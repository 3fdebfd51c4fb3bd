#!/usr/bin/env bash
# The whole test suite: set-up, the shared plugin and fixture build, then every test.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
"$ROOT/scripts/setup.sh"
"$ROOT/scripts/build-plugins.sh"
say "cargo test"
cargo test --workspace --release "$@"
