#!/usr/bin/env bash
# `make demo`: the main job on the example app, on a fresh machine.
#   1. start the local environment (registry + Kubernetes control plane, tests/testenv)
#   2. kodev build both binaries of examples/demo in one go build, push them
#   3. run the web image for real with runc (no Docker), as uid 65532
#   4. kodev apply the manifests: ko:// references become digests, Pods become Ready
#   5. kodev up on a scratch copy: save a change to the shared package, watch both
#      Deployments get the new digest and roll, without a re-apply
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}

tests/testenv/up.sh
# shellcheck disable=SC1091
source .testenv/env
export KO_DOCKER_REPO="$KODEV_TEST_REGISTRY/demo"
export KOCACHE="${KOCACHE:-$HOME/.cache/kodev}"

echo
echo "== kodev build ./cmd/web ./cmd/worker  (KO_DOCKER_REPO=$KO_DOCKER_REPO)"
refs=$(cd examples/demo && $PY -m kodev build -B ./cmd/web ./cmd/worker)
echo "$refs"
web=$(echo "$refs" | head -n1)

echo
echo "== the same build again: nothing changed, so nothing is pushed"
(cd examples/demo && time $PY -m kodev build -B ./cmd/web ./cmd/worker >/dev/null)

echo
echo "== running $web with umoci + runc"
$PY -m tests.support.runimage "$web" -- --once

if $PY -m kodev apply --help >/dev/null 2>&1; then
    echo
    echo "== kodev apply -f examples/demo/config/app.yaml"
    (cd examples/demo && $PY -m kodev apply -B -f config/app.yaml)
fi
echo
echo "== kodev up -f config/ --no-tui  (on a scratch copy), then a change to internal/greeting"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cp -r examples/demo "$scratch/demo"
git init -q "$scratch/demo"
log="$scratch/up.log"
(cd "$scratch/demo" && exec $PY -m kodev up -B -f config/ --no-tui --logs=false) >"$log" 2>&1 &
up_pid=$!
wait_for() {  # wait_for PATTERN COUNT: until the up log has COUNT matching lines
    for _ in $(seq 1 600); do
        [ "$(grep -c -- "$1" "$log" || true)" -ge "$2" ] && return 0
        kill -0 "$up_pid" 2>/dev/null || { cat "$log"; echo "kodev up exited"; return 1; }
        sleep 0.2
    done
    cat "$log"; echo "timed out waiting for: $1"; return 1
}
wait_for "rollout complete" 2
sed -i 's/hello from %s/hi from %s/' "$scratch/demo/internal/greeting/greeting.go"
wait_for "after the save" 4
kill -TERM "$up_pid"; wait "$up_pid" || true
cat "$log"

echo
echo "demo done. The environment keeps running: 'make testenv-down' stops it."
echo "Try: source $ROOT/.testenv/env; cd examples/demo; kodev build ./cmd/web"
