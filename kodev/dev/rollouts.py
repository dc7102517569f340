"""Following rollouts and health for ``kodev up``: what it waits for after a swap or an
apply, and what it reports between rollouts.

The loop tells the tracker what it expects (:meth:`RolloutTracker.expect`: these import
paths, from this moment, at this generation or for this new object); the tracker decides
from the watched state (:class:`~kodev.kube.rollout.WorkloadWatch`, each kind's status
rule) when a rollout is done or stuck, and between rollouts whether a Pod stopped
running (reported once) or recovered (once it lasted :data:`RECOVERED_AFTER_SECONDS`).
It only reads the cluster state and writes the dashboard; the loop acts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kodev.dev.dashboard import FAILED, READY, Dashboard
from kodev.kube.rollout import ProblemReport, WorkloadRef, WorkloadWatch

RECOVERED_AFTER_SECONDS = 15.0  # longer than the kubelet's first crash back-off (10 s)


@dataclass
class PendingRollout:
    import_paths: set[str]
    started: float  # time.monotonic() of the save that caused it
    generation: int
    cause: str = "the save"  # what the latency is measured from, for messages
    uid: str = ""  # set when the swap replaced the object (a Job): follow the new one
    problems: ProblemReport = field(default_factory=ProblemReport)


class RolloutTracker:
    """Rollouts in flight and problems between them, per workload."""

    def __init__(self, dashboard: Dashboard, import_paths_of: Callable[[WorkloadRef], set[str]],
                 *, live: bool, stopping: threading.Event) -> None:
        self.dashboard = dashboard
        self.import_paths_of = import_paths_of
        self.live = live
        self.stopping = stopping
        self.watch: WorkloadWatch | None = None  # set once the cluster is watched
        self.pending: dict[WorkloadRef, PendingRollout] = {}
        # Workloads kodev itself deletes and creates again (Jobs): their DELETED event is
        # no deletion by hand, which would make kodev up apply the file again.
        self.replacing: set[WorkloadRef] = set()
        self.health: dict[WorkloadRef, ProblemReport] = {}  # reported between rollouts
        self._clear_since: dict[WorkloadRef, float] = {}  # when a reported problem went away
        self._pending_lock = threading.Lock()
        self._health_lock = threading.Lock()

    def expect(self, workload: WorkloadRef, pending: PendingRollout) -> None:
        with self._pending_lock:
            self.pending[workload] = pending

    def pending_workloads(self) -> list[WorkloadRef]:
        with self._pending_lock:
            return list(self.pending)

    # ---------------------------------------------------------------- rollouts

    def check(self, workload: WorkloadRef) -> None:
        """Is the rollout this workload waits for done, or newly stuck?"""
        if self.watch is None:
            return
        with self._pending_lock:
            pending = self.pending.get(workload)
            if pending is None or self.watch.generation(workload) < pending.generation \
                    or (pending.uid and self.watch.uid(workload) != pending.uid):
                return
            status = self.watch.status(workload)
            if status is None:
                return
            if status.done:
                del self.pending[workload]
            elif not (status.problem and pending.problems.news(status.problem)):
                return
        latency = time.monotonic() - pending.started
        if status.done:
            # Nothing runs now (a CronJob): say what the swap means instead of "rollout".
            done = status.message if status.desired == 0 else "rollout complete"
            self._done(workload, pending, latency, done)
        else:
            for ip in pending.import_paths:
                self.dashboard.update(ip, state=FAILED,
                                      message=row_problem(status.problem or ""))
            self.dashboard.emit("failed", f"{workload}: rollout stuck: {status.problem}",
                                workload=str(workload), reason=status.problem)

    def _done(self, workload: WorkloadRef, pending: PendingRollout, latency: float,
              what: str) -> None:
        self.replacing.discard(workload)  # the new object is the one followed now
        with self._health_lock:  # what the rollout replaced is no longer news
            self.health.pop(workload, None)
            self._clear_since.pop(workload, None)
        with self._pending_lock:
            still_rolling = {ip for p in self.pending.values() for ip in p.import_paths}
        after_save = pending.cause == "the save"
        mode = "rolled" if self.live else ""
        for ip in pending.import_paths - still_rolling:
            if after_save:
                self.dashboard.update(ip, state=READY, latency_seconds=latency, message=mode)
            else:
                self.dashboard.update(ip, state=READY, message="")
        timing: dict[str, Any] = {"save_to_ready_seconds": round(latency, 3),
                                  "save_to_running_seconds": round(latency, 3),
                                  "mode": "rolled"} if after_save else {}
        self.dashboard.emit("ready", f"{workload}: {what}, "
                            f"{latency:.2f}s after {pending.cause}", workload=str(workload),
                            namespace=workload.namespace,
                            importpaths=sorted(pending.import_paths), **timing)

    # ---------------------------------------------------------------- health

    def check_health(self, workload: WorkloadRef) -> None:
        """Between rollouts: a Pod that stops running (a crash after the rollout counted
        it available, say) is reported once; its recovery once it has lasted
        RECOVERED_AFTER_SECONDS (a crash-looping container runs for a moment between
        back-offs, and that is no recovery)."""
        if self.watch is None or self.stopping.is_set():
            return
        with self._pending_lock:
            if workload in self.pending:
                return
        with self._health_lock:  # the watch thread and the recovery timer both call this
            self._update_health(workload, self.watch.pod_problem(workload))

    def _update_health(self, workload: WorkloadRef, problem: str | None) -> None:
        if problem:
            self._clear_since.pop(workload, None)
            if self.health.setdefault(workload, ProblemReport()).news(problem):
                self._report_unhealthy(workload, problem)
            return
        if workload not in self.health:
            return
        if workload not in self._clear_since:
            self._clear_since[workload] = time.monotonic()
            timer = threading.Timer(RECOVERED_AFTER_SECONDS, self.check_health, (workload,))
            timer.daemon = True
            timer.start()
            return
        if time.monotonic() - self._clear_since[workload] < RECOVERED_AFTER_SECONDS - 0.5:
            return  # a Pod event before the timer: the timer decides
        del self.health[workload], self._clear_since[workload]
        for ip in self.import_paths_of(workload):
            self.dashboard.update(ip, state=READY, message="")
        self.dashboard.emit("recovered", f"{workload}: running again", workload=str(workload))

    def _report_unhealthy(self, workload: WorkloadRef, problem: str) -> None:
        for ip in self.import_paths_of(workload):
            self.dashboard.update(ip, state=FAILED, message=row_problem(problem))
        self.dashboard.emit("failed", f"{workload}: {problem}", workload=str(workload),
                            reason=problem)


def row_problem(problem: str) -> str:
    """A problem as an image row shows it: the reason first (the Pod is in the event)."""
    return problem.split(": ", 1)[1] if problem.startswith("pod ") else problem
