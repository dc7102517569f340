#!/usr/bin/env bash
# Build the test-environment binaries (kube-apiserver, kube-controller-manager,
# kube-scheduler, etcd, kwok) from the wrapper Go modules next to this script into
# a versioned cache directory outside the clone.
#
#   tests/testenv/build.sh            build if needed, print the binary directory
#   tests/testenv/build.sh --print    only print the binary directory (no build)
#   tests/testenv/build.sh --check    exit 0 if the cache is complete, 1 otherwise
#
# The cache key is a hash of the wrapper modules' go.mod/go.sum and of this script,
# so editing any of them (versions, flags) selects a fresh directory. Binaries are
# built into a temporary directory which is renamed into place; `.complete` is
# written last, so an interrupted build never leaves a half-filled cache behind.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE_ROOT="${KODEV_TESTENV_CACHE:-$HOME/.cache/kodev/testenv-bin}"

KUBE_VERSION="v1.37.2"
KUBE_MINOR="37"

export GOTOOLCHAIN=local
export CGO_ENABLED=0
export GOFLAGS="-mod=readonly"

key() {
    (
        cd "$HERE"
        for m in kube etcd kwok; do
            printf '%s\n' "$m"
            cat "$m/go.mod" "$m/go.sum"
        done
        cat build.sh
    ) | sha256sum | cut -c1-16
}

BIN="$CACHE_ROOT/$(key)"

case "${1:-}" in
    --print)
        printf '%s\n' "$BIN"
        exit 0
        ;;
    --check)
        [[ -f "$BIN/.complete" ]]
        exit $?
        ;;
    "") ;;
    *)
        echo "usage: $0 [--print|--check]" >&2
        exit 2
        ;;
esac

if [[ -f "$BIN/.complete" ]]; then
    printf '%s\n' "$BIN"
    exit 0
fi

mkdir -p "$CACHE_ROOT"
# Serialise concurrent builds of the same key (two shells running up.sh at once).
exec 9>"$CACHE_ROOT/.lock-$(key)"
flock 9
if [[ -f "$BIN/.complete" ]]; then
    printf '%s\n' "$BIN"
    exit 0
fi

TMP="$(mktemp -d "$CACHE_ROOT/.tmp-$(key)-XXXXXX")"
cleanup() { rm -rf "$TMP"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

LDF="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    LDF="$LDF -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$KUBE_MINOR"
    LDF="$LDF -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done

start=$SECONDS
echo "testenv: building kube-apiserver, kube-controller-manager, kube-scheduler ($KUBE_VERSION)" >&2
go -C "$HERE/kube" build -trimpath -pgo=off -ldflags "$LDF" -o "$TMP/" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler
echo "testenv: building etcd" >&2
go -C "$HERE/etcd" build -trimpath -pgo=off -ldflags "-s -w" -o "$TMP/etcd" go.etcd.io/etcd/server/v3
echo "testenv: building kwok" >&2
go -C "$HERE/kwok" build -trimpath -pgo=off -ldflags "-s -w" -o "$TMP/kwok" sigs.k8s.io/kwok/cmd/kwok

rm -rf "$BIN"
mv "$TMP" "$BIN"
touch "$BIN/.complete"
echo "testenv: binaries built in $((SECONDS - start))s -> $BIN" >&2
printf '%s\n' "$BIN"
