#!/usr/bin/env bash
# Build OpenTofu's CLI (`tofu`) from the Go module proxy.
#
#   tests/terraform/build.sh           build if needed, print the path of the binary
#   tests/terraform/build.sh --print   only print the path (no build)
#   tests/terraform/build.sh --check   exit 0 if the binary is cached, 1 otherwise
#
# OpenTofu's go.mod has a replace directive (hcl/v2 => opentofu/hcl/v2), which Go honours
# only in the main module, so `go install ...@version` refuses it. The module is therefore
# downloaded from the proxy (checked against sum.golang.org like any module) and built
# with itself as the main module, using its own go.mod and go.sum unchanged.
#
# The binary lives in ~/.cache/kodev/tools/tofu-<version>-<hash of this script>/tofu; it is
# built into a temporary directory that is renamed into place, and `.complete` is written
# last, so an interrupted build leaves nothing behind.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE_ROOT="${KODEV_TOOLS_CACHE:-$HOME/.cache/kodev/tools}"
VERSION="v1.12.6"
MOD="github.com/opentofu/opentofu"

export GOTOOLCHAIN=local
export CGO_ENABLED=0
export GOFLAGS="-mod=readonly"

key() { sha256sum <"$HERE/build.sh" | cut -c1-12; }

DIR="$CACHE_ROOT/tofu-$VERSION-$(key)"

case "${1:-}" in
    --print) printf '%s\n' "$DIR/tofu"; exit 0 ;;
    --check) [[ -f "$DIR/.complete" ]]; exit $? ;;
    "") ;;
    *) echo "usage: $0 [--print|--check]" >&2; exit 2 ;;
esac

if [[ -f "$DIR/.complete" ]]; then
    printf '%s\n' "$DIR/tofu"
    exit 0
fi

mkdir -p "$CACHE_ROOT"
exec 9>"$CACHE_ROOT/.lock-tofu-$(key)"
flock 9
if [[ -f "$DIR/.complete" ]]; then
    printf '%s\n' "$DIR/tofu"
    exit 0
fi

TMP="$(mktemp -d "$CACHE_ROOT/.tmp-tofu-XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start=$SECONDS
echo "tofu: building $MOD/cmd/tofu@$VERSION from the module proxy (several minutes the first time)" >&2
# A scratch module only to run `go mod download` from (outside any other module).
mkdir "$TMP/dl"
printf 'module kodev.invalid/tofu-download\n' >"$TMP/dl/go.mod"
SRC="$(go -C "$TMP/dl" mod download -json "$MOD@$VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
if [[ -z "$SRC" || ! -f "$SRC/go.mod" ]]; then
    echo "tofu: go mod download $MOD@$VERSION gave no source directory" >&2
    exit 1
fi
# dev=no: a release build (no "-dev" suffix in `tofu version`).
go -C "$SRC" build -trimpath -pgo=off -ldflags "-s -w -X $MOD/version.dev=no" \
    -o "$TMP/tofu" ./cmd/tofu
rm -rf "$TMP/dl"

rm -rf "$DIR"
mv "$TMP" "$DIR"
touch "$DIR/.complete"
echo "tofu: built in $((SECONDS - start))s -> $DIR/tofu" >&2
printf '%s\n' "$DIR/tofu"
