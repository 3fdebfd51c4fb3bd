#!/usr/bin/env bash
# Builds the pfn binary, the example plugins and the test fixtures once, in release, and puts
# them where the demo, the tests and the benchmarks look for them:
#   target/release/pfn
#   target/plugins/lib<name>.so (+ lib<name>.pfn.toml, the pin)
#   target/fixtures/...          (see tests/src/fixtures.rs)
# Plugins are built with -p, apart from the host, so that the host's features do not leak into
# them, and each built version is checked against the version it was built as.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

BUILD="$TARGET/plugin-build"
PFN="$TARGET/release/pfn"
export PFN_PLUGIN_CACHE="${PFN_PLUGIN_CACHE:-$TARGET/plugin-cache}"
mkdir -p "$PLUGINS_OUT" "$FIXTURES_OUT/shapes" "$FIXTURES_OUT/versioned"

say "building pfn"
cargo build --release --quiet -p pfn

# Checks that the library at $1 declares version $2, and copies it to $3.
install_checked() {
    local built="$1" version="$2" dest="$3" found
    found=$("$PFN" plugin inspect "$built" --output json --log-level error | sed -n 's/.*"version": "\(.*\)".*/\1/p')
    if [ "$found" != "$version" ]; then
        echo "stale build: $built declares version '$found', expected $version" >&2
        exit 1
    fi
    mkdir -p "$(dirname "$dest")"
    cp "$built" "$dest.tmp" && mv "$dest.tmp" "$dest"
}

package_version() {
    sed -n 's/^version = "\(.*\)"/\1/p' "$1/Cargo.toml" | head -n 1
}

say "building example plugins and fixtures"
examples=(exclamation order-summary word-count etl enrich filter router threshold-alert)
fixtures=(panicky manual-ack stateful zoo broken-layout)
args=()
for p in "${examples[@]}" "${fixtures[@]}"; do args+=(-p "$p"); done
cargo build --release --quiet --target-dir "$BUILD" "${args[@]}"
for p in "${examples[@]}"; do
    lib="lib${p//-/_}.so"
    install_checked "$BUILD/release/$lib" "$(package_version "plugins/$p")" "$PLUGINS_OUT/$lib"
    "$PFN" plugin pin "$PLUGINS_OUT/$lib" --log-level error >/dev/null
done
for p in panicky manual-ack stateful zoo; do
    lib="lib${p//-/_}.so"
    install_checked "$BUILD/release/$lib" "$(package_version "tests/fixtures/$p")" "$FIXTURES_OUT/$lib"
done
# Refused by design, so copied without the version check.
cp "$BUILD/release/libbroken_layout.so" "$FIXTURES_OUT/"

say "building the panic=abort fixture"
CARGO_PROFILE_RELEASE_PANIC=abort cargo build --release --quiet --target-dir "$BUILD" -p abort-build
cp "$BUILD/release/libabort_build.so" "$FIXTURES_OUT/"

# The features of a fixture crate, one per line.
features_of() {
    sed -n '/^\[features\]/,/^\[/s/^\([a-z-]*\) = \[\]$/\1/p' "tests/fixtures/$1/Cargo.toml"
}

say "building one library per function shape"
for shape in $(features_of shapes); do
    cargo build --release --quiet --target-dir "$BUILD" -p shapes --features "$shape"
    install_checked "$BUILD/release/libshapes.so" 1.0.0 "$FIXTURES_OUT/shapes/$shape.so"
done

say "building the hand-built modules (refused by design)"
mkdir -p "$FIXTURES_OUT/hand-built"
for module in $(features_of hand-built); do
    cargo build --release --quiet --target-dir "$BUILD" -p hand-built --features "$module"
    cp "$BUILD/release/libhand_built.so" "$FIXTURES_OUT/hand-built/$module.so"
done

# Builds the versioned fixture as version $1 against the plugin interface in $2, into $3.
build_versioned() {
    local version="$1" abi="$2" dest="$3" src
    src="$TARGET/fixture-src/versioned-$version-$(basename "$abi")"
    rm -rf "$src" && mkdir -p "$src"
    cp -r tests/fixtures/versioned/src "$src/"
    sed -e "s/^version = .*/version = \"$version\"/" \
        -e "s|path = \"../../../plugin-abi\"|path = \"$abi\"|" \
        tests/fixtures/versioned/Cargo.toml > "$src/Cargo.toml"
    # The workspace's release profile, so the dependencies built for the other plugins are reused.
    printf '\n[workspace]\n\n[profile.release]\npanic = "unwind"\ndebug = "line-tables-only"\n' >> "$src/Cargo.toml"
    cp Cargo.lock "$src/Cargo.lock"
    cargo build --release --quiet --offline --manifest-path "$src/Cargo.toml" --target-dir "$BUILD"
    install_checked "$BUILD/release/libversioned.so" "$version" "$dest"
}

say "building the versioned fixture at several versions"
for version in 1.0.0 1.1.0 1.2.0 2.0.0; do
    build_versioned "$version" "$ROOT/plugin-abi" "$FIXTURES_OUT/versioned/$version/libversioned.so"
done
say "building the versioned fixture against the plugin interface as released at 1.0.0"
build_versioned 1.0.0 "$ROOT/tests/abi-1.0.0" "$FIXTURES_OUT/abi-1.0.0/libversioned.so"
say "plugins in $PLUGINS_OUT, fixtures in $FIXTURES_OUT"
