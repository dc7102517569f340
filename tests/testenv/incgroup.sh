#!/usr/bin/env bash
# incgroup.sh CGROUP CMD...: move this process into CGROUP (a path such as
# /kodev-1234abcd/daemons) in every cgroup v1 hierarchy, then exec CMD. up.sh starts
# containerd and kubelet through it so that they, the containerd shims and anything
# they leave behind can be found (and killed) by cgroup on teardown, never by name.
set -euo pipefail
# shellcheck source=tests/testenv/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
cg="$1"
shift
cgroup_create "$cg"
for h in $(cgroup_v1_hierarchies); do
    echo $$ >"$h$cg/cgroup.procs"
done
exec "$@"
