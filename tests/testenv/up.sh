#!/usr/bin/env bash
# Start the local test environment: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, a docker-registry and one real node (containerd + runc + CNI +
# kubelet), all inside a network namespace of its own. The machine's own (root)
# namespace gains nothing but two listeners on 127.0.0.1 (forward.py) that lead to the
# apiserver and the registry, on the same port numbers as inside. State lives in
# .testenv/ in the repo root (override: KODEV_TESTENV_DIR); `.testenv/env` holds
# shell exports.
#
# Idempotent: if the recorded processes are alive and /readyz answers, it is a no-op.
# A stale state directory (dead processes) is cleaned and replaced. Any failure or
# interruption during start tears down everything started so far.
set -euo pipefail

# shellcheck source=tests/testenv/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

NODE_NAME="kodev-node"
# The node's address, on the namespace's own lo; Pods get 10.88.0.0/24 on a bridge.
# Both exist only inside the namespace, which has no route out.
NODE_IP="10.250.255.1"
POD_SUBNET="10.88.0.0/24"
PAUSE_IMAGE_TAG="pause:3.10"
READY_TIMEOUT="${KODEV_TESTENV_TIMEOUT:-120}"

# Every probe runs inside the namespace (the forwarders only lead to the apiserver
# and the registry).
kcurl() {
    "${INNS[@]}" curl -sS --fail-with-body --max-time 30 --cacert "$PKI/ca.crt" \
        --cert "$PKI/admin.crt" --key "$PKI/admin.key" "$@"
}

apiserver_ready() {
    local url
    [[ -f "$STATE/env" && -f "$PKI/ca.crt" ]] || return 1
    url="$(sed -n 's/^export KODEV_TESTENV_APISERVER=//p' "$STATE/env")"
    [[ -n "$url" ]] || return 1
    kcurl --max-time 5 -o /dev/null "$url/readyz" 2>/dev/null
}

# One line saying why this machine cannot run the node, and exit 1 (tests that need
# the node then fail; they never skip).
require_node_support() {
    local why=""
    if [[ "$(id -u)" != 0 ]]; then
        why="the real node needs root (network namespace, cgroups, mounts); run as root"
    elif ! command -v nsenter >/dev/null || ! command -v ip >/dev/null; then
        why="nsenter and ip are missing: apt-get install util-linux iproute2"
    elif [[ ! -x /usr/sbin/runc ]]; then
        why="runc is missing: apt-get install runc (or make deps)"
    elif ! command -v umoci >/dev/null || ! command -v skopeo >/dev/null; then
        why="umoci and skopeo are missing: make deps"
    elif [[ -z "$(cgroup_v1_hierarchies | grep -m1 '/memory$')" ]]; then
        why="no cgroup v1 memory hierarchy under /sys/fs/cgroup (the node is set up for this machine's cgroup v1 layout)"
    elif ! grep -qw overlay /proc/filesystems && ! modprobe overlay 2>/dev/null; then
        why="the kernel has no overlay filesystem (containerd's snapshotter needs it)"
    fi
    if [[ -n "$why" ]]; then
        log "cannot start the real node: $why"
        exit 1
    fi
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
require_node_support

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
for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet containerd \
    containerd-shim-runc-v2 pause cni/bridge cni/host-local cni/loopback cni/portmap; do
    [[ -x "$BIN/$b" ]] || { log "missing $BIN/$b"; exit 1; }
done

T0=$SECONDS
started=1
mkdir -p "$STATE"
STATE="$(cd "$STATE" && pwd)"
PIDS="$STATE/pids" LOGS="$STATE/logs" PKI="$STATE/pki"
: >"$PIDS"
# Who started it: the pytest fixture passes a token so it only tears down its own.
printf '%s\n' "${KODEV_TESTENV_OWNER:-manual}" >"$STATE/owner"
mkdir -p "$LOGS" "$PKI" "$STATE/registry"

# ---------------------------------------------------------------- host paths, namespace
# Record what we create outside $STATE so that down.sh removes exactly that.
: >"$STATE/host-paths"
for p in "${HOST_PATHS[@]}"; do
    [[ -e "$p" ]] || printf '%s\n' "$p" >>"$STATE/host-paths"
done
[[ -d /run/netns ]] || touch "$STATE/netns-dir-created"
ip netns add "$NETNS_NAME"
ip -n "$NETNS_NAME" link set lo up
ip -n "$NETNS_NAME" addr add "$NODE_IP/32" dev lo
printf '%s\n' "$NETNS_NAME" >"$STATE/netns"

# ---------------------------------------------------------------- free ports
# Picked free in the root namespace (where the forwarders listen) and used with the
# same numbers inside the fresh namespace, where every port is free.
read -r ETCD_PORT ETCD_PEER_PORT API_PORT KCM_PORT SCHED_PORT REG_PORT < <(
    python3 - <<'EOF'
import socket
socks = []
for _ in range(6):
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
spawn registry "${INNS[@]}" /usr/bin/docker-registry serve "$STATE/registry.yml"
spawn forward python3 "$TESTENV_HERE/forward.py" "$NETNS_PATH" "$API_PORT" "$REG_PORT"

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
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.96.0.1,IP:%s,DNS:kubernetes,' "$NODE_IP"
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
spawn etcd "${INNS[@]}" "$BIN/etcd" \
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
wait_for "etcd /health" etcd "${INNS[@]}" curl -sf --max-time 2 "http://127.0.0.1:$ETCD_PORT/health"

# ---------------------------------------------------------------- kube-apiserver
spawn kube-apiserver "${INNS[@]}" "$BIN/kube-apiserver" \
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
spawn kube-controller-manager "${INNS[@]}" "$BIN/kube-controller-manager" \
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
spawn kube-scheduler "${INNS[@]}" "$BIN/kube-scheduler" \
    --config="$STATE/scheduler.yaml" \
    --authentication-kubeconfig="$KUBECONFIG_PATH" \
    --authorization-kubeconfig="$KUBECONFIG_PATH" \
    --authentication-skip-lookup=true \
    --bind-address=127.0.0.1 --secure-port="$SCHED_PORT" \
    --v=1

# ---------------------------------------------------------------- the real node
# Images of our own two programs: no image can be pulled from the internet, so the
# static `pause` (the sandbox, pinned in containerd) and `testapp` (a workload for tests
# that do not build with kodev) become one-layer images in the local registry, made
# with umoci and pushed with skopeo.
PAUSE_IMAGE="127.0.0.1:$REG_PORT/$PAUSE_IMAGE_TAG"
# push_program NAME REF USER: prints the pushed image's digest.
push_program() {
    local name="$1" ref="$2" user="$3" work="$STATE/image-$1" arch
    arch="$(go env GOARCH)"
    rm -rf "$work"
    mkdir -p "$work"
    umoci init --layout "$work/oci"
    umoci new --image "$work/oci:img"
    umoci insert --rootless --image "$work/oci:img" "$BIN/$name" "/$name"
    umoci config --image "$work/oci:img" --os linux --architecture "$arch" \
        --config.entrypoint "/$name" --config.user "$user"
    skopeo copy -q --dest-tls-verify=false --digestfile "$work/digest" \
        "oci:$work/oci:img" "docker://$ref" >&2
    cat "$work/digest"
    rm -rf "$work"
}
push_images() {
    push_program pause "$PAUSE_IMAGE" 65535:65535 >/dev/null
    TESTAPP_IMAGE="127.0.0.1:$REG_PORT/testenv/testapp@$(
        push_program testapp "127.0.0.1:$REG_PORT/testenv/testapp:1" 65532:65532)"
}
wait_for "registry /v2/ (through the forwarder)" forward curl -sf --max-time 2 "http://127.0.0.1:$REG_PORT/v2/"
push_images 2>"$LOGS/images.log" || { log "could not push the pause and testapp images"; cat "$LOGS/images.log" >&2; exit 1; }

CTRD="$STATE/containerd"
mkdir -p "$CTRD/certs.d/127.0.0.1:$REG_PORT" "$STATE/cni/net.d" "$STATE/cni/ipam" \
    "$STATE/kubelet/manifests" "$STATE/kubelet/pod-logs" "$STATE/kubelet/volume-plugins"
cat >"$CTRD/certs.d/127.0.0.1:$REG_PORT/hosts.toml" <<EOF
server = "http://127.0.0.1:$REG_PORT"

[host."http://127.0.0.1:$REG_PORT"]
  capabilities = ["pull", "resolve"]
EOF
cat >"$CTRD/config.toml" <<EOF
version = 3
root = "$CTRD/root"
state = "$CTRD/state"

[grpc]
  address = "$CTRD/containerd.sock"
[ttrpc]
  address = "$CTRD/containerd.sock.ttrpc"

[plugins]
  [plugins.'io.containerd.cri.v1.runtime']
    enable_selinux = false
    disable_apparmor = true
    # root here lacks CAP_SYS_RESOURCE: runc must not raise oom_score_adj
    restrict_oom_score_adj = true
    tolerate_missing_hugetlb_controller = true
    netns_mounts_under_state_dir = true
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = "runc"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = "/usr/sbin/runc"
          Root = "$STATE/runc"
          SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ["$BIN/cni"]
      conf_dir = "$STATE/cni/net.d"
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = "overlayfs"
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = "$PAUSE_IMAGE"
    [plugins.'io.containerd.cri.v1.images'.registry]
      config_path = "$CTRD/certs.d"
  [plugins.'io.containerd.grpc.v1.cri']
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
EOF
cat >"$STATE/cni/net.d/10-kodev.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "kodev",
  "plugins": [
    {"type": "bridge", "bridge": "kodev0", "isGateway": true, "ipMasq": false,
     "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$STATE/cni/ipam",
              "ranges": [[{"subnet": "$POD_SUBNET"}]]}},
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "loopback"}
  ]
}
EOF
# containerd finds containerd-shim-runc-v2 on PATH.
spawn containerd env PATH="$BIN:$PATH" "${INNS[@]}" "$TESTENV_HERE/incgroup.sh" "$CG_DAEMONS" \
    "$BIN/containerd" --config "$CTRD/config.toml"
wait_for "containerd socket" containerd test -S "$CTRD/containerd.sock"

cgroup_create "$CG_PODS"
cat >"$STATE/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: $CG_PODS
failSwapOn: false
containerRuntimeEndpoint: unix://$CTRD/containerd.sock
imageServiceEndpoint: unix://$CTRD/containerd.sock
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization:
  mode: AlwaysAllow
resolvConf: ""
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: "0%"
  nodefs.inodesFree: "0%"
  imagefs.available: "0%"
  imagefs.inodesFree: "0%"
staticPodPath: $STATE/kubelet/manifests
podLogsDir: $STATE/kubelet/pod-logs
volumePluginDir: $STATE/kubelet/volume-plugins
maxPods: 110
shutdownGracePeriod: 0s
EOF
spawn kubelet "${INNS[@]}" "$TESTENV_HERE/incgroup.sh" "$CG_DAEMONS" "$BIN/kubelet" \
    --config="$STATE/kubelet/config.yaml" \
    --kubeconfig="$KUBECONFIG_PATH" \
    --root-dir="$STATE/kubelet/root" \
    --cert-dir="$STATE/kubelet/pki" \
    --node-ip="$NODE_IP" \
    --hostname-override="$NODE_NAME" \
    --v=1

# ---------------------------------------------------------------- readiness
wait_for "kube-controller-manager /healthz" kube-controller-manager \
    "${INNS[@]}" curl -sfk --max-time 2 "https://127.0.0.1:$KCM_PORT/healthz"
wait_for "kube-scheduler /healthz" kube-scheduler \
    "${INNS[@]}" curl -sfk --max-time 2 "https://127.0.0.1:$SCHED_PORT/healthz"
wait_for "node $NODE_NAME Ready and untainted" kubelet get_check "/api/v1/nodes/$NODE_NAME" \
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
        KODEV_TESTENV_NETNS "$NETNS_NAME" \
        KODEV_TESTENV_TESTAPP "$TESTAPP_IMAGE" \
        KODEV_TESTENV_APISERVER "$API_URL" \
        KODEV_TESTENV_NODE "$NODE_NAME" \
        KODEV_TESTENV_BIN "$BIN"
} >"$STATE/env.tmp"
mv "$STATE/env.tmp" "$STATE/env"

started=0
log "ready in $((SECONDS - T0))s: source $STATE/env (apiserver $API_URL, registry 127.0.0.1:$REG_PORT)"
