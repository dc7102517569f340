#!/usr/bin/env bash
# Third-party custom resources for tests, from the Go module proxy: the Argo Rollouts
# controller (built from its module, as the test environment's control plane is) and the
# CRD manifests of Argo Rollouts and Knative Serving (a module's zip holds its repository's
# manifests, so `go mod download` is all that is needed).
#
#   tests/testenv/argo.sh controller           build if needed, print the controller binary
#   tests/testenv/argo.sh controller --print   only print the path (no build)
#   tests/testenv/argo.sh controller --check   exit 0 if the binary is cached, 1 otherwise
#   tests/testenv/argo.sh crds argo|knative    extract if needed, print a directory of CRD YAMLs
#
# Everything lives in ~/.cache/kodev/tools/ under a name carrying the module version and a
# recipe revision (bump RECIPE when the build or the file selection changes); it is made in a
# temporary directory renamed into place, and `.complete` is written last, so an
# interrupted run leaves nothing behind and the next one starts over.
#
# argo-rollouts' go.mod has replace directives, which Go honours only in the main module
# (`go install module@version` refuses it): the controller is built inside a writable copy
# of the downloaded module. v1.10.2 needs go >= 1.26.10, newer than the toolchain here, so
# the newest v1.10.x this toolchain builds is used.
set -euo pipefail

CACHE_ROOT="${KODEV_TOOLS_CACHE:-$HOME/.cache/kodev/tools}"
ARGO_MODULE="github.com/argoproj/argo-rollouts"
ARGO_VERSION="v1.10.1"
KNATIVE_MODULE="knative.dev/serving"
KNATIVE_VERSION="v0.51.0"
RECIPE="r1"

export GOTOOLCHAIN=local
export CGO_ENABLED=0

say() { printf 'argo.sh: %s\n' "$*" >&2; }

# module_dir MODULE VERSION: download MODULE@VERSION (module cache) and print its directory.
module_dir() {
    local json dir
    json="$(cd / && GOFLAGS='' go mod download -json "$1@$2")" || true
    dir="$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' <<<"$json")"
    if [[ -z "$dir" || ! -d "$dir" ]]; then
        say "cannot download $1@$2 from the Go module proxy:"
        printf '%s\n' "$json" >&2
        return 1
    fi
    printf '%s\n' "$dir"
}

# cached NAME FILL RESULT: make $CACHE_ROOT/NAME once (FILL TMPDIR fills it), print
# $CACHE_ROOT/NAME/RESULT. Concurrent runs serialise on a lock file.
cached() {
    local name="$1" fill="$2" result="$3" dir tmp
    dir="$CACHE_ROOT/$name"
    if [[ ! -f "$dir/.complete" ]]; then
        mkdir -p "$CACHE_ROOT"
        exec 9>"$CACHE_ROOT/.lock-$name"
        flock 9
        if [[ ! -f "$dir/.complete" ]]; then
            tmp="$(mktemp -d "$CACHE_ROOT/.tmp-$name-XXXXXX")"
            chmod 755 "$tmp"
            # shellcheck disable=SC2064
            trap "chmod -R u+w '$tmp' 2>/dev/null; rm -rf '$tmp'" EXIT
            trap 'exit 130' INT
            trap 'exit 143' TERM
            "$fill" "$tmp"
            rm -rf "$dir"
            mv "$tmp" "$dir"
            touch "$dir/.complete"
            trap - EXIT
        fi
        exec 9>&-
    fi
    if [[ "$result" == . ]]; then printf '%s\n' "$dir"; else printf '%s\n' "$dir/$result"; fi
}

fill_controller() {
    local out="$1" src start
    start=$SECONDS
    say "building $ARGO_MODULE/cmd/rollouts-controller@$ARGO_VERSION (several minutes the first time)"
    src="$(module_dir "$ARGO_MODULE" "$ARGO_VERSION")"
    cp -r "$src" "$out/src"
    chmod -R u+w "$out/src"
    local ldf="-s -w -X $ARGO_MODULE/utils/version.version=${ARGO_VERSION#v}"
    ldf="$ldf -X $ARGO_MODULE/utils/version.buildDate=1970-01-01T00:00:00Z"
    GOFLAGS=-mod=mod go -C "$out/src" build -trimpath -pgo=off -ldflags "$ldf" \
        -o "$out/rollouts-controller" ./cmd/rollouts-controller
    chmod -R u+w "$out/src"
    rm -rf "$out/src"
    say "rollouts-controller built in $((SECONDS - start))s"
}

fill_argo_crds() {
    local src
    src="$(module_dir "$ARGO_MODULE" "$ARGO_VERSION")"
    cp "$src"/manifests/crds/*-crd.yaml "$1/"
    chmod u+w "$1"/*.yaml
}

# Knative Serving's own resources only (config/core/300-resources); the networking and
# caching CRDs it also uses belong to other modules and no controller runs here anyway.
fill_knative_crds() {
    local src f
    src="$(module_dir "$KNATIVE_MODULE" "$KNATIVE_VERSION")"
    for f in "$src"/config/core/300-resources/*.yaml; do
        grep -q '^kind: CustomResourceDefinition' "$f" && cp "$f" "$1/"
    done
    chmod u+w "$1"/*.yaml
}

controller() {
    local name="argo-rollouts-$ARGO_VERSION-$RECIPE"
    case "${1:-}" in
        --print) printf '%s\n' "$CACHE_ROOT/$name/rollouts-controller"; return 0 ;;
        --check) [[ -f "$CACHE_ROOT/$name/.complete" ]]; return $? ;;
        "") cached "$name" fill_controller rollouts-controller ;;
        *) usage ;;
    esac
}

crds() {
    case "${1:-}" in
        argo) cached "argo-rollouts-crds-$ARGO_VERSION-$RECIPE" fill_argo_crds . ;;
        knative) cached "knative-serving-crds-$KNATIVE_VERSION-$RECIPE" fill_knative_crds . ;;
        *) usage ;;
    esac
}

usage() {
    echo "usage: $0 controller [--print|--check] | crds argo|knative" >&2
    exit 2
}

case "${1:-}" in
    controller) controller "${2:-}" ;;
    crds) crds "${2:-}" ;;
    *) usage ;;
esac
