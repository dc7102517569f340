# shellcheck shell=bash
# Shared helpers for up.sh and down.sh (sourced, not executed).

TESTENV_HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TESTENV_REPO="$(cd "$TESTENV_HERE/../.." && pwd)"
STATE="${KODEV_TESTENV_DIR:-$TESTENV_REPO/.testenv}"
PIDS="$STATE/pids"
LOGS="$STATE/logs"
PKI="$STATE/pki"

# Names derived from the state directory, so two clones never share them: the network
# namespace everything runs in, and the cgroup subtree of the real node (containerd,
# kubelet and the shims in .../daemons, the Pods under .../pods, kubelet's cgroupRoot).
ENV_ID="$(realpath -m "$STATE" | sha256sum | cut -c1-8)"
NETNS_NAME="kodev-$ENV_ID"
NETNS_PATH="/run/netns/$NETNS_NAME"
CG_TOP="/kodev-$ENV_ID"
CG_DAEMONS="$CG_TOP/daemons"
CG_PODS="$CG_TOP/pods"
# Paths the kubelet, containerd and CNI use whatever they are told; up.sh records which
# of them it created (in $STATE/host-paths) and down.sh removes exactly those.
HOST_PATHS=(/var/lib/kubelet /run/containerd /var/lib/cni)

log() { printf 'testenv: %s\n' "$*" >&2; }

# Serialise up.sh/down.sh. The lock is taken on the scripts directory itself, so no
# lock file is left behind; started daemons must not inherit fd 8 (see spawn).
take_lock() {
    exec 8<"$TESTENV_HERE"
    flock 8
}

# Field 22 of /proc/<pid>/stat (start time in clock ticks) identifies a process
# incarnation, so a recycled PID is never mistaken for one of ours. Zombies count
# as gone.
proc_starttime() {
    local s
    s="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    s="${s##*) }"
    # shellcheck disable=SC2086
    set -- $s
    [[ "$1" != "Z" && "$1" != "X" ]] || return 1
    printf '%s\n' "${20}"
}

# pid_alive PID STARTTIME
pid_alive() {
    local now
    now="$(proc_starttime "$1")" || return 1
    [[ "$now" == "$2" ]]
}

# spawn NAME CMD...: start a daemon in its own session, output to $LOGS/NAME.log,
# record "NAME PID STARTTIME" in $PIDS.
spawn() {
    local name="$1" pid st
    shift
    setsid "$@" </dev/null >"$LOGS/$name.log" 2>&1 8<&- 9<&- &
    pid=$!
    st="$(proc_starttime "$pid")" || st="gone"
    printf '%s %s %s\n' "$name" "$pid" "$st" >>"$PIDS"
}

# all_alive: every recorded process still runs (and the record is non-empty).
all_alive() {
    local name pid st n=0
    [[ -s "$PIDS" ]] || return 1
    while read -r name pid st; do
        [[ -n "$name" ]] || continue
        pid_alive "$pid" "$st" || return 1
        n=$((n + 1))
    done <"$PIDS"
    ((n > 0))
}

# Print the tail of each component log to stderr.
dump_logs() {
    local f
    [[ -d "$LOGS" ]] || return 0
    for f in "$LOGS"/*.log; do
        [[ -f "$f" ]] || continue
        printf '\n===== %s (last 40 lines) =====\n' "$(basename "$f")" >&2
        tail -n 40 "$f" >&2 || true
    done
}

# stop_group NAME PID STARTTIME...: SIGTERM all, wait up to 10s, SIGKILL stragglers.
stop_group() {
    local -a recs=("$@")
    local i deadline pending
    for ((i = 0; i < ${#recs[@]}; i += 3)); do
        pid_alive "${recs[i + 1]}" "${recs[i + 2]}" && kill -TERM "${recs[i + 1]}" 2>/dev/null || true
    done
    deadline=$((SECONDS + 10))
    while :; do
        pending=0
        for ((i = 0; i < ${#recs[@]}; i += 3)); do
            pid_alive "${recs[i + 1]}" "${recs[i + 2]}" && pending=1 || true
        done
        ((pending == 1 && SECONDS < deadline)) || break
        sleep 0.1
    done
    for ((i = 0; i < ${#recs[@]}; i += 3)); do
        if pid_alive "${recs[i + 1]}" "${recs[i + 2]}"; then
            log "${recs[i]} (pid ${recs[i + 1]}) ignored SIGTERM, sending SIGKILL"
            kill -KILL "${recs[i + 1]}" 2>/dev/null || true
        fi
    done
    deadline=$((SECONDS + 5))
    for ((i = 0; i < ${#recs[@]}; i += 3)); do
        while pid_alive "${recs[i + 1]}" "${recs[i + 2]}" && ((SECONDS < deadline)); do
            sleep 0.1
        done
    done
}

# Stop exactly the recorded processes (the node's kubelet and containerd first, then
# whatever their cgroups still hold, then the rest in reverse start order, etcd last),
# undo everything up.sh did to the machine (mounts, cgroups, the network namespace,
# host paths), then remove $STATE.
stop_all() {
    local -a node=() clients=() storage=()
    local name pid st
    if [[ -f "$PIDS" ]]; then
        while read -r name pid st; do
            [[ -n "${name:-}" && -n "${pid:-}" && -n "${st:-}" ]] || continue
            if [[ "$name" == kubelet || "$name" == containerd ]]; then
                node=("$name" "$pid" "$st" "${node[@]}")
            elif [[ "$name" == "etcd" ]]; then
                storage+=("$name" "$pid" "$st")
            else
                clients=("$name" "$pid" "$st" "${clients[@]}")
            fi
        done <"$PIDS"
    fi
    ((${#node[@]} == 0)) || stop_group "${node[@]}"
    cgroup_teardown
    ((${#clients[@]} == 0)) || stop_group "${clients[@]}"
    ((${#storage[@]} == 0)) || stop_group "${storage[@]}"
    unmount_state
    netns_teardown
    host_paths_teardown
    # Only ever delete a directory that up.sh created (guards a mistyped
    # KODEV_TESTENV_DIR pointing at something else).
    if [[ -f "$STATE/owner" || -f "$PIDS" || -z "$(ls -A "$STATE" 2>/dev/null)" ]]; then
        rm -rf "$STATE"
    else
        log "not removing $STATE: it does not look like a testenv state directory"
        return 1
    fi
}

# ---------------------------------------------------------------- network namespace
# "${INNS[@]}" CMD...: run CMD in the environment's network namespace (nsenter, not `ip netns
# exec`, which would also give it a private mount namespace and a remounted /sys).
INNS=(nsenter "--net=$NETNS_PATH" --)

# ---------------------------------------------------------------- cgroups (v1 + unified)
cgroup_v1_hierarchies() {
    local h
    for h in /sys/fs/cgroup/*/; do
        h="${h%/}"
        [[ -f "$h/cgroup.procs" && "${h##*/}" != unified ]] && printf '%s\n' "$h"
    done
}

# cgroup_create PATH: PATH in every v1 hierarchy; cpuset children get their parent's
# CPUs and memory nodes (a new cpuset cgroup starts empty and accepts no process).
cgroup_create() {
    local h p part
    for h in $(cgroup_v1_hierarchies); do
        mkdir -p "$h$1"
        [[ -f "$h/cpuset.cpus" ]] || continue
        p="$h"
        for part in ${1//\// }; do
            p="$p/$part"
            [[ -s "$p/cpuset.cpus" ]] || cat "${p%/*}/cpuset.cpus" >"$p/cpuset.cpus"
            [[ -s "$p/cpuset.mems" ]] || cat "${p%/*}/cpuset.mems" >"$p/cpuset.mems"
        done
    done
}

# cgroup_pids: every process in the node's cgroup subtree, in any hierarchy.
cgroup_pids() {
    local h
    for h in /sys/fs/cgroup/*/; do
        [[ -d "$h${CG_TOP#/}" ]] || continue
        find "$h${CG_TOP#/}" -name cgroup.procs -exec cat {} + 2>/dev/null
    done | sort -un
}

# Kill what is left in the node's cgroups (containers and shims outlive containerd by
# design), then remove the subtree in every hierarchy, deepest first.
cgroup_teardown() {
    local i pids h
    for ((i = 0; i < 50; i++)); do
        pids="$(cgroup_pids)"
        [[ -n "$pids" ]] || break
        # shellcheck disable=SC2086
        kill -KILL $pids 2>/dev/null || true
        sleep 0.1
    done
    [[ -z "$(cgroup_pids)" ]] || log "processes left in $CG_TOP: $(cgroup_pids | tr '\n' ' ')"
    for h in /sys/fs/cgroup/*/; do
        [[ -d "$h${CG_TOP#/}" ]] || continue
        find "$h${CG_TOP#/}" -depth -type d -exec rmdir {} + 2>/dev/null || true
        [[ ! -d "$h${CG_TOP#/}" ]] || log "could not remove cgroup $h${CG_TOP#/}"
    done
}

# Unmount everything below the state directory (Pod volumes, container root
# filesystems, sandbox /dev/shm and network namespace files), deepest first.
unmount_state() {
    local dir m
    dir="$(realpath -m "$STATE")"
    for m in $(awk -v d="$dir/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r); do
        umount -l "$m" 2>/dev/null || log "could not unmount $m"
    done
}

# The namespace, and /run/netns if `ip netns add` created it for us.
netns_teardown() {
    if [[ -e "$NETNS_PATH" ]]; then
        ip netns del "$NETNS_NAME" 2>/dev/null || log "could not delete network namespace $NETNS_NAME"
    fi
    if [[ -f "$STATE/netns-dir-created" && -d /run/netns && -z "$(ls -A /run/netns)" ]]; then
        umount /run/netns 2>/dev/null || true
        rmdir /run/netns 2>/dev/null || true
    fi
}

host_paths_teardown() {
    local p
    [[ -f "$STATE/host-paths" ]] || return 0
    while read -r p; do
        [[ -n "$p" && -e "$p" ]] || continue
        unmount_under "$p"
        rm -rf "$p"
    done <"$STATE/host-paths"
}

unmount_under() {
    local m
    for m in $(awk -v d="$1/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r); do
        umount -l "$m" 2>/dev/null || true
    done
}
