#!/usr/bin/env bash
# Stop the test environment started by up.sh: exactly the processes recorded in
# .testenv/pids (verified by PID and start time, never by name), then remove the
# state directory. Safe to run when nothing is up.
set -euo pipefail

# shellcheck source=tests/testenv/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

take_lock
if [[ ! -e "$STATE" ]]; then
    log "nothing to stop ($STATE does not exist)"
    exit 0
fi
if [[ "${1:-}" == "--logs" ]]; then
    dump_logs
fi
stop_all
log "stopped; removed $STATE"
