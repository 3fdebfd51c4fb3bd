#!/usr/bin/env bash
# Installs what a fresh machine lacks to build and test pfn:
#   - protoc, OpenSSL headers and pkg-config (the `pulsar` crate needs them to build);
#   - a Python venv at $TARGET/pulsar-venv with pulsar-lite, the test broker that
#     tests/src/broker.rs starts, pulsar-client, the reference client to compare against,
#     prometheus-client, whose parser the metrics tests read scrapes with, and
#     kubernetes-validate, which checks the Kubernetes manifests against Kubernetes' schemas.
# Idempotent: a second run only checks and returns.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo is required (https://rustup.rs)" >&2
    exit 1
fi
say "toolchain: $(cargo --version)"

# Debian packages the build needs: those of "$@" that are not installed yet.
missing_debs() {
    local pkg
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || printf '%s\n' "$pkg"
    done
}

debs=()
command -v protoc >/dev/null 2>&1 || debs+=(protobuf-compiler)
mapfile -t -O "${#debs[@]}" debs < <(missing_debs libssl-dev pkg-config)
if [ "${#debs[@]}" -gt 0 ]; then
    say "installing ${debs[*]}"
    sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${debs[@]}" >/dev/null
fi

VENV="$TARGET/pulsar-venv"
BROKER="$VENV/lib/python3.11/site-packages/pulsar_lite/bin/pulsar-lite"
if ! "$VENV/bin/python" -c 'import pulsar, pulsar_lite, prometheus_client, kubernetes_validate' >/dev/null 2>&1; then
    if ! command -v python3 >/dev/null 2>&1; then
        echo "python3 is required to install the test broker (pulsar-lite)" >&2
        exit 1
    fi
    say "creating $VENV with pulsar-lite, pulsar-client, prometheus-client and kubernetes-validate"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet 'pulsar-lite==0.2.0' pulsar-client 'prometheus-client==0.21.1' \
        'kubernetes-validate==1.37.0'
fi
# The site-packages path names the venv's Python version; ask the venv when it is not 3.11.
if [ ! -x "$BROKER" ]; then
    BROKER="$("$VENV/bin/python" -c \
        'import os, pulsar_lite; print(os.path.join(os.path.dirname(pulsar_lite.__file__), "bin", "pulsar-lite"))')"
fi
if [ ! -x "$BROKER" ]; then
    echo "pulsar-lite is installed but its binary is not at $BROKER" >&2
    exit 1
fi
say "test broker: $BROKER (tests find it there, or set PFN_PULSAR_LITE)"
