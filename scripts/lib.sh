# Shared by the scripts: paths and a logging helper. Source it; do not run it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
PLUGINS_OUT="$TARGET/plugins"
FIXTURES_OUT="$TARGET/fixtures"
say() { printf '==> %s\n' "$*" >&2; }
