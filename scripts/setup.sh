#!/usr/bin/env bash
# Installs what a fresh machine lacks to build and test pfn.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo is required (https://rustup.rs)" >&2
    exit 1
fi
say "toolchain: $(cargo --version)"
