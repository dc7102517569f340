#!/usr/bin/env bash
# `make demo`: the main job on the example app, on a fresh machine.
#   1. start the local environment (registry, Kubernetes control plane and one real
#      node: kubelet + containerd + runc, tests/testenv)
#   2. kodev build both binaries of examples/demo in one go build, push them
#   3. run the web image for real with runc (no Docker), as uid 65532
#   4. kodev apply the manifests: ko:// references become digests, the node pulls and
#      runs them
#   5. kodev up --port-forward on a scratch copy: ask the running web over HTTP, save a
#      change to the shared package, and ask again: the new code answers, both
#      Deployments rolled, without a re-apply
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-$ROOT/.venv/bin/python}

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
echo "== kodev up -f config/ --no-tui --port-forward  (on a scratch copy)"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cp -r examples/demo "$scratch/demo"
git init -q "$scratch/demo"
log="$scratch/up.log"
(cd "$scratch/demo" && exec $PY -m kodev up -B -f config/ --no-tui --logs=false \
    --port-forward) >"$log" 2>&1 &
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
wait_for "deployment/web:8080 -> " 1
url=$(grep -o 'deployment/web:8080 -> http://127.0.0.1:[0-9]*' "$log" | head -n1 | sed 's/.*-> //')
echo "web answers through kodev's port-forward ($url):"
echo "  $(curl -fsS --max-time 20 "$url")"

echo
echo "== saving a change to internal/greeting (shared by web and worker)"
saved=$(date +%s.%N)
sed -i 's/hello from %s/hi from %s/' "$scratch/demo/internal/greeting/greeting.go"
answer=""
for _ in $(seq 1 1200); do
    answer=$(curl -fsS --max-time 20 "$url" 2>/dev/null || true)
    case "$answer" in "hi from web"*) break ;; esac
    sleep 0.05
done
answered=$(date +%s.%N)
case "$answer" in "hi from web"*) ;; *) cat "$log"; echo "the new code never answered"; exit 1 ;; esac
echo "web now answers: $answer"
echo "save -> new code answering through the port-forward:" \
    "$($PY -c "print(f'{$answered - $saved:.2f} s')")"
wait_for "after the save" 4
kill -TERM "$up_pid"; wait "$up_pid" || true
echo
echo "kodev up's own lines:"
cat "$log"

echo
echo "demo done. The environment keeps running: 'make testenv-down' stops it."
echo "Try: . $ROOT/.venv/bin/activate; . $ROOT/.testenv/env; cd $ROOT/examples/demo; kodev build ./cmd/web"
