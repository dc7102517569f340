#!/usr/bin/env bash
# Build Skaffold's CLI from the Go module proxy through the wrapper module in tool/
# (Skaffold's go.mod has replace directives, which Go honours only in the main module,
# so `go install ...@version` refuses it; tool/go.mod copies them).
#
#   tests/skaffold/build.sh           build if needed, print the path of the binary
#   tests/skaffold/build.sh --print   only print the path (no build)
#   tests/skaffold/build.sh --check   exit 0 if the binary is cached, 1 otherwise
#
# The binary lives in ~/.cache/kodev/tools/skaffold-<version>-<hash of tool/go.mod, go.sum
# and this script>/skaffold; it is built into a temporary directory that is renamed into
# place, and `.complete` is written last, so an interrupted build leaves nothing behind.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE_ROOT="${KODEV_TOOLS_CACHE:-$HOME/.cache/kodev/tools}"
VERSION="v2.24.0"
PKG="github.com/GoogleContainerTools/skaffold/v2"

export GOTOOLCHAIN=local
export CGO_ENABLED=0
export GOFLAGS="-mod=readonly"

key() { cat "$HERE/tool/go.mod" "$HERE/tool/go.sum" "$HERE/build.sh" | sha256sum | cut -c1-12; }

DIR="$CACHE_ROOT/skaffold-$VERSION-$(key)"

case "${1:-}" in
    --print) printf '%s\n' "$DIR/skaffold"; exit 0 ;;
    --check) [[ -f "$DIR/.complete" ]]; exit $? ;;
    "") ;;
    *) echo "usage: $0 [--print|--check]" >&2; exit 2 ;;
esac

if [[ -f "$DIR/.complete" ]]; then
    printf '%s\n' "$DIR/skaffold"
    exit 0
fi

mkdir -p "$CACHE_ROOT"
exec 9>"$CACHE_ROOT/.lock-skaffold-$(key)"
flock 9
if [[ -f "$DIR/.complete" ]]; then
    printf '%s\n' "$DIR/skaffold"
    exit 0
fi

TMP="$(mktemp -d "$CACHE_ROOT/.tmp-skaffold-XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start=$SECONDS
echo "skaffold: building $PKG/cmd/skaffold@$VERSION from the module proxy (several minutes the first time)" >&2
LDF="-s -w -X $PKG/pkg/skaffold/version.version=$VERSION"
LDF="$LDF -X $PKG/pkg/skaffold/version.buildDate=1970-01-01T00:00:00Z"
go -C "$HERE/tool" build -trimpath -pgo=off -tags "timetzdata osusergo netgo release" \
    -ldflags "$LDF" -o "$TMP/skaffold" "$PKG/cmd/skaffold"

rm -rf "$DIR"
mv "$TMP" "$DIR"
touch "$DIR/.complete"
echo "skaffold: built in $((SECONDS - start))s -> $DIR/skaffold" >&2
printf '%s\n' "$DIR/skaffold"
