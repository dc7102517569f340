#!/usr/bin/env bash
# Start the local test environment: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, KWOK (fake kubelet, one Ready node), the pod-log router and a
# docker-registry, all on 127.0.0.1 with free ports. State lives in .testenv/ in the
# repo root (override: KODEV_TESTENV_DIR); `.testenv/env` holds shell exports.
#
# Idempotent: if the recorded processes are alive and /readyz answers, it is a no-op.
# A stale state directory (dead processes) is cleaned and replaced. Any failure or
# interruption during start tears down everything started so far.
set -euo pipefail

# shellcheck source=tests/testenv/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

NODE_NAME="kwok-node-0"
LOG_ANNOTATION="testenv.kodev.dev/logs"
READY_TIMEOUT="${KODEV_TESTENV_TIMEOUT:-120}"

kcurl() {
    curl -sS --fail-with-body --max-time 30 --cacert "$PKI/ca.crt" \
        --cert "$PKI/admin.crt" --key "$PKI/admin.key" "$@"
}

apiserver_ready() {
    local url
    [[ -f "$STATE/env" && -f "$PKI/ca.crt" ]] || return 1
    url="$(sed -n 's/^export KODEV_TESTENV_APISERVER=//p' "$STATE/env")"
    [[ -n "$url" ]] || return 1
    kcurl --max-time 5 -o /dev/null "$url/readyz" 2>/dev/null
}

started=0
on_exit() {
    local rc=$?
    if ((started == 1 && rc != 0)); then
        log "start failed (exit $rc); component logs follow"
        dump_logs
        stop_all
        log "everything started so far has been stopped"
    fi
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

take_lock

if [[ -d "$STATE" ]]; then
    if all_alive && apiserver_ready; then
        log "already running ($STATE/env)"
        exit 0
    fi
    log "stale state in $STATE, cleaning it up"
    stop_all
fi

BIN="$("$TESTENV_HERE/build.sh" --print)"
if ! "$TESTENV_HERE/build.sh" --check; then
    log "binary cache $BIN missing, building (the first build takes a while)"
    "$TESTENV_HERE/build.sh" >/dev/null
fi
for b in etcd kube-apiserver kube-controller-manager kube-scheduler kwok; do
    [[ -x "$BIN/$b" ]] || { log "missing $BIN/$b"; exit 1; }
done
# The kwok module source (stages, CRDs); downloaded into GOMODCACHE if it was pruned.
KWOK_VERSION="$(awk '$1 == "sigs.k8s.io/kwok" { print $2 }' "$TESTENV_HERE/kwok/go.mod")"
KWOK_DIR="$(GOTOOLCHAIN=local go -C "$TESTENV_HERE/kwok" mod download -json \
    "sigs.k8s.io/kwok@$KWOK_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
[[ -d "$KWOK_DIR/kustomize" ]] || { log "kwok module not found in GOMODCACHE"; exit 1; }

T0=$SECONDS
started=1
mkdir -p "$STATE"
STATE="$(cd "$STATE" && pwd)"
PIDS="$STATE/pids" LOGS="$STATE/logs" PKI="$STATE/pki"
PODLOGS="$STATE/podlogs"
: >"$PIDS"
# Who started it: the pytest fixture passes a token so it only tears down its own.
printf '%s\n' "${KODEV_TESTENV_OWNER:-manual}" >"$STATE/owner"
mkdir -p "$LOGS" "$PKI" "$PODLOGS" "$STATE/registry"

# ---------------------------------------------------------------- free ports
read -r ETCD_PORT ETCD_PEER_PORT API_PORT KCM_PORT SCHED_PORT KWOK_PORT REG_PORT < <(
    python3 - <<'EOF'
import socket
socks = []
for _ in range(7):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
)
API_URL="https://127.0.0.1:$API_PORT"

# ---------------------------------------------------------------- registry
cat >"$STATE/registry.yml" <<EOF
version: 0.1
log:
  level: info
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $STATE/registry
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$REG_PORT
EOF
spawn registry /usr/bin/docker-registry serve "$STATE/registry.yml"

# ---------------------------------------------------------------- PKI
(
    cd "$PKI"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=kodev-testenv-ca" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -keyout ca.key -out ca.crt
    openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
        -keyout apiserver.key -out apiserver.csr
    {
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.96.0.1,DNS:kubernetes,'
        printf 'DNS:kubernetes.default,DNS:kubernetes.default.svc,'
        printf 'DNS:kubernetes.default.svc.cluster.local\n'
        printf 'extendedKeyUsage=serverAuth\n'
    } >server.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
        -days 3650 -extfile server.ext -out apiserver.crt
    openssl req -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=kodev-admin" \
        -keyout admin.key -out admin.csr
    printf 'extendedKeyUsage=clientAuth\n' >client.ext
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
        -days 3650 -extfile client.ext -out admin.crt
    openssl genrsa -out sa.key 2048
    openssl rsa -in sa.key -pubout -out sa.pub
) >"$LOGS/pki.log" 2>&1
rm -f "$LOGS/pki.log" "$PKI"/*.csr "$PKI"/*.ext "$PKI"/*.srl

KUBECONFIG_PATH="$STATE/kubeconfig"
cat >"$KUBECONFIG_PATH" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: kodev-testenv
  cluster:
    server: $API_URL
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
- name: kodev-admin
  user:
    client-certificate-data: $(base64 -w0 "$PKI/admin.crt")
    client-key-data: $(base64 -w0 "$PKI/admin.key")
contexts:
- name: kodev-testenv
  context:
    cluster: kodev-testenv
    user: kodev-admin
    namespace: default
current-context: kodev-testenv
EOF
chmod 600 "$KUBECONFIG_PATH"

# ---------------------------------------------------------------- helpers
# wait_for DESCRIPTION COMPONENT CMD...: poll CMD until it succeeds; fail early if
# COMPONENT's process died, or after READY_TIMEOUT seconds.
wait_for() {
    local desc="$1" comp="$2" deadline=$((SECONDS + READY_TIMEOUT)) name pid st
    shift 2
    until "$@" >/dev/null 2>&1; do
        if [[ -n "$comp" ]]; then
            read -r name pid st < <(grep "^$comp " "$PIDS")
            pid_alive "$pid" "$st" || { log "$comp exited while waiting for $desc"; return 1; }
        fi
        ((SECONDS < deadline)) || { log "timed out waiting for $desc"; return 1; }
        sleep 0.2
    done
}

# json_check EXPR: read JSON on stdin, exit 0 iff the Python expression on `o` holds.
json_check() {
    python3 -c 'import json,sys; o=json.load(sys.stdin); sys.exit(0 if eval("(" + sys.argv[1] + ")") else 1)' "$1"
}

get_check() {
    local path="$1" expr="$2"
    kcurl "$API_URL$path" | json_check "$expr"
}

# ---------------------------------------------------------------- etcd
spawn etcd "$BIN/etcd" \
    --name=kodev-testenv \
    --data-dir="$STATE/etcd" \
    --listen-client-urls="http://127.0.0.1:$ETCD_PORT" \
    --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster="kodev-testenv=http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster-state=new \
    --unsafe-no-fsync=true \
    --auto-compaction-mode=periodic --auto-compaction-retention=5m \
    --quota-backend-bytes=2147483648 \
    --log-level=warn
wait_for "etcd /health" etcd curl -sf --max-time 2 "http://127.0.0.1:$ETCD_PORT/health"

# ---------------------------------------------------------------- kube-apiserver
spawn kube-apiserver "$BIN/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address=127.0.0.1 --secure-port="$API_PORT" \
    --advertise-address=127.0.0.1 --endpoint-reconciler-type=none \
    --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$PKI/sa.pub" \
    --service-account-signing-key-file="$PKI/sa.key" \
    --service-cluster-ip-range=10.96.0.0/16 \
    --authorization-mode=RBAC \
    --allow-privileged=true \
    --kubelet-preferred-address-types=InternalIP,Hostname \
    --profiling=false \
    --v=1
wait_for "kube-apiserver /readyz" kube-apiserver kcurl --max-time 5 "$API_URL/readyz"

# ---------------------------------------------------------------- controllers
spawn kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig="$KUBECONFIG_PATH" \
    --authentication-kubeconfig="$KUBECONFIG_PATH" \
    --authorization-kubeconfig="$KUBECONFIG_PATH" \
    --authentication-skip-lookup=true \
    --leader-elect=false \
    --bind-address=127.0.0.1 --secure-port="$KCM_PORT" \
    --service-account-private-key-file="$PKI/sa.key" \
    --root-ca-file="$PKI/ca.crt" \
    --use-service-account-credentials=false \
    --node-monitor-period=5s --node-monitor-grace-period=40s \
    --profiling=false \
    --v=1

cat >"$STATE/scheduler.yaml" <<EOF
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: $KUBECONFIG_PATH
leaderElection:
  leaderElect: false
EOF
spawn kube-scheduler "$BIN/kube-scheduler" \
    --config="$STATE/scheduler.yaml" \
    --authentication-kubeconfig="$KUBECONFIG_PATH" \
    --authorization-kubeconfig="$KUBECONFIG_PATH" \
    --authentication-skip-lookup=true \
    --bind-address=127.0.0.1 --secure-port="$SCHED_PORT" \
    --v=1

# ---------------------------------------------------------------- KWOK CRDs, node
for crd in logs clusterlogs; do
    sed '/^---$/d' "$KWOK_DIR/kustomize/crd/bases/kwok.x-k8s.io_$crd.yaml" |
        kcurl -o /dev/null -H 'Content-Type: application/yaml' --data-binary @- \
            "$API_URL/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    wait_for "CRD $crd established" "" get_check \
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/$crd.kwok.x-k8s.io" \
        'any(c["type"] == "Established" and c["status"] == "True"
             for c in o.get("status", {}).get("conditions", []))'
done

ARCH="$(go env GOARCH)"
kcurl -o /dev/null -H 'Content-Type: application/json' "$API_URL/api/v1/nodes" --data-binary @- <<EOF
{
  "apiVersion": "v1",
  "kind": "Node",
  "metadata": {
    "name": "$NODE_NAME",
    "annotations": {"node.alpha.kubernetes.io/ttl": "0", "kwok.x-k8s.io/node": "fake"},
    "labels": {
      "kubernetes.io/hostname": "$NODE_NAME",
      "kubernetes.io/os": "linux",
      "kubernetes.io/arch": "$ARCH",
      "type": "kwok"
    }
  },
  "status": {
    "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"},
    "capacity": {"cpu": "32", "memory": "256Gi", "pods": "110"}
  }
}
EOF

# ---------------------------------------------------------------- KWOK
# Stages come from the kwok module in GOMODCACHE (the kwok binary has none built in).
# pod-ready additionally waits for the log router's annotation, so that a Ready Pod
# always has its per-Pod log files wired up. No KwokConfiguration document: kwok only
# applies its option defaults when the config has none; options are passed as flags.
{
    for f in node/fast/node-initialize.yaml \
        node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
        pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
        printf -- '---\n'
        cat "$KWOK_DIR/kustomize/stage/$f"
    done
    printf -- '---\n'
    awk -v ann="$LOG_ANNOTATION" '
        { print }
        /^    matchExpressions:/ && !done {
            print "    - key: '\''.metadata.annotations.\"" ann "\"'\''"
            print "      operator: '\''Exists'\''"
            done = 1
        }' "$KWOK_DIR/kustomize/stage/pod/fast/pod-ready.yaml"
} >"$STATE/kwok.yaml"
grep -q "$LOG_ANNOTATION" "$STATE/kwok.yaml" || { log "could not patch pod-ready stage"; exit 1; }

spawn kwok "$BIN/kwok" \
    --kubeconfig="$KUBECONFIG_PATH" \
    --config="$STATE/kwok.yaml" \
    --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --node-ip=127.0.0.1 --node-name=localhost --node-port="$KWOK_PORT" \
    --server-address="127.0.0.1:$KWOK_PORT" \
    --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --node-lease-duration-seconds=40 \
    --cidr=10.244.0.0/16 \
    --enable-crds=Logs,ClusterLogs

spawn logrouter python3 "$TESTENV_HERE/logrouter.py" \
    --server="$API_URL" --ca="$PKI/ca.crt" --cert="$PKI/admin.crt" --key="$PKI/admin.key" \
    --podlogs="$PODLOGS"

# ---------------------------------------------------------------- readiness
wait_for "kube-controller-manager /healthz" kube-controller-manager \
    curl -sfk --max-time 2 "https://127.0.0.1:$KCM_PORT/healthz"
wait_for "kube-scheduler /healthz" kube-scheduler \
    curl -sfk --max-time 2 "https://127.0.0.1:$SCHED_PORT/healthz"
wait_for "registry /v2/" registry curl -sf --max-time 2 "http://127.0.0.1:$REG_PORT/v2/"
wait_for "node $NODE_NAME Ready and untainted" kwok get_check "/api/v1/nodes/$NODE_NAME" \
    'any(c["type"] == "Ready" and c["status"] == "True" for c in o["status"]["conditions"])
     and not o["spec"].get("taints")'
wait_for "default ServiceAccount" kube-controller-manager \
    kcurl -o /dev/null "$API_URL/api/v1/namespaces/default/serviceaccounts/default"
wait_for "kube-public namespace" "" kcurl -o /dev/null "$API_URL/api/v1/namespaces/kube-public"

# KEP-1755: advertise the local registry.
python3 - "$REG_PORT" "$TESTENV_HERE/README.md" >"$STATE/registry-configmap.json" <<'EOF'
import json, sys
port, readme = sys.argv[1], sys.argv[2]
print(json.dumps({
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "local-registry-hosting", "namespace": "kube-public"},
    "data": {
        "localRegistryHosting.v1": f'host: "127.0.0.1:{port}"\nhelp: "file://{readme}"\n',
    },
}))
EOF
kcurl -o /dev/null -H 'Content-Type: application/json' \
    --data-binary "@$STATE/registry-configmap.json" \
    "$API_URL/api/v1/namespaces/kube-public/configmaps"

{
    printf '# Generated by tests/testenv/up.sh; source it to use the test environment.\n'
    printf 'export %s=%q\n' \
        KUBECONFIG "$KUBECONFIG_PATH" \
        KODEV_TEST_REGISTRY "127.0.0.1:$REG_PORT" \
        KO_DOCKER_REPO "127.0.0.1:$REG_PORT" \
        KODEV_TESTENV_DIR "$STATE" \
        KODEV_TESTENV_PODLOGS "$PODLOGS" \
        KODEV_TESTENV_APISERVER "$API_URL" \
        KODEV_TESTENV_NODE "$NODE_NAME" \
        KODEV_TESTENV_BIN "$BIN"
} >"$STATE/env.tmp"
mv "$STATE/env.tmp" "$STATE/env"

started=0
log "ready in $((SECONDS - T0))s: source $STATE/env (apiserver $API_URL, registry 127.0.0.1:$REG_PORT)"
