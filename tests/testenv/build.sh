#!/usr/bin/env bash
# Build the test-environment binaries from the wrapper Go modules next to this script
# into a versioned cache directory outside the clone: the control plane
# (kube-apiserver, kube-controller-manager, kube-scheduler, etcd), the real node
# (kubelet, containerd, containerd-shim-runc-v2, ctr, the CNI plugins bridge,
# host-local, loopback and portmap) and two small programs of our own: `pause` (the
# sandbox container) and `testapp` (a workload for tests that do not build with kodev).
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

MODULES="kube etcd containerd cni programs"
# containerd without the storage drivers and docs generator the node does not use.
CONTAINERD_TAGS="urfave_cli_no_docs no_btrfs no_devmapper no_zfs"

key() {
    (
        cd "$HERE"
        for m in $MODULES; do
            printf '%s\n' "$m"
            cat "$m/go.mod" "$m/go.sum" 2>/dev/null || true
        done
        cat programs/*/main.go
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
# One line per step, and a line every 30 s while a step runs, so a cold build
# (about 20 minutes on 2 cores) is never minutes of silence.
step() {
    local what="$1" t0=$SECONDS ticker rc=0
    shift
    echo "testenv: building $what" >&2
    ( while sleep 30; do echo "testenv:   ... $what, $((SECONDS - t0))s" >&2; done ) &
    ticker=$!
    "$@" || rc=$?
    kill "$ticker" 2>/dev/null; wait "$ticker" 2>/dev/null || true
    ((rc == 0)) || { echo "testenv: building $what failed (exit $rc)" >&2; exit "$rc"; }
    echo "testenv: built $what in $((SECONDS - t0))s (total $((SECONDS - start))s)" >&2
}
gobuild() { local dir="$1"; shift; go -C "$HERE/$dir" build -trimpath -pgo=off "$@"; }

step "kube-apiserver, kube-controller-manager, kube-scheduler, kubelet ($KUBE_VERSION)" \
    gobuild kube -ldflags "$LDF" -o "$TMP/" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kubelet
step etcd gobuild etcd -ldflags "-s -w" -o "$TMP/etcd" go.etcd.io/etcd/server/v3
step "containerd, ctr" gobuild containerd -tags "$CONTAINERD_TAGS" -ldflags "-s -w" -o "$TMP/" \
    github.com/containerd/containerd/v2/cmd/containerd \
    github.com/containerd/containerd/v2/cmd/ctr
step containerd-shim-runc-v2 gobuild containerd -tags "$CONTAINERD_TAGS no_grpc" -ldflags "-s -w" \
    -o "$TMP/containerd-shim-runc-v2" github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2
mkdir -p "$TMP/cni"
step "CNI plugins (bridge, host-local, loopback, portmap)" gobuild cni -ldflags "-s -w" -o "$TMP/cni/" \
    github.com/containernetworking/plugins/plugins/main/bridge \
    github.com/containernetworking/plugins/plugins/ipam/host-local \
    github.com/containernetworking/plugins/plugins/main/loopback \
    github.com/containernetworking/plugins/plugins/meta/portmap
step "pause, testapp" gobuild programs -ldflags "-s -w" -o "$TMP/" ./pause ./testapp

rm -rf "$BIN"
mv "$TMP" "$BIN"
touch "$BIN/.complete"
echo "testenv: binaries built in $((SECONDS - start))s -> $BIN" >&2
printf '%s\n' "$BIN"
