# shellcheck shell=bash
# Shared helpers for up.sh and down.sh (sourced, not executed).

TESTENV_HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TESTENV_REPO="$(cd "$TESTENV_HERE/../.." && pwd)"
STATE="${KODEV_TESTENV_DIR:-$TESTENV_REPO/.testenv}"
PIDS="$STATE/pids"
LOGS="$STATE/logs"
PKI="$STATE/pki"

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

# Stop exactly the recorded processes (first everything but etcd, in reverse start
# order, then etcd), then remove $STATE.
stop_all() {
    local -a clients=() storage=()
    local name pid st
    if [[ -f "$PIDS" ]]; then
        while read -r name pid st; do
            [[ -n "${name:-}" && -n "${pid:-}" && -n "${st:-}" ]] || continue
            if [[ "$name" == "etcd" ]]; then
                storage+=("$name" "$pid" "$st")
            else
                clients=("$name" "$pid" "$st" "${clients[@]}")
            fi
        done <"$PIDS"
    fi
    ((${#clients[@]} == 0)) || stop_group "${clients[@]}"
    ((${#storage[@]} == 0)) || stop_group "${storage[@]}"
    # Only ever delete a directory that up.sh created (guards a mistyped
    # KODEV_TESTENV_DIR pointing at something else).
    if [[ -f "$STATE/owner" || -f "$PIDS" || -z "$(ls -A "$STATE" 2>/dev/null)" ]]; then
        rm -rf "$STATE"
    else
        log "not removing $STATE: it does not look like a testenv state directory"
        return 1
    fi
}
