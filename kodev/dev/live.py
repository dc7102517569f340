"""``kodev up --live``: a new binary runs in the existing containers, with no new Pod.

Images built in live mode start ``/kodev/live`` (kodev/golang/supervisor/main.go), which
runs the program as its child. On a save, kodev streams the new binary to each running
container through the ``pods/exec`` subresource (the supervisor's ``swap`` command reads
it from stdin, checks size and sha256, then has PID 1 restart the program with it), so
the Pod keeps its UID, IP, env, volumes and user, and its log goes on.

What is decided here is pure (which volume to add, whether a change can go live, which
Pods still run an old binary); :class:`LiveSwapper` acts, through kodev/kube/exec.py.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kodev.errors import KodevError
from kodev.golang.builder import BuiltBinary
from kodev.golang.supervisor import IMAGE_PATH, LIVE_DIR
from kodev.kube.apply import pod_spec
from kodev.kube.client import Cluster
from kodev.kube.exec import ExecSession
from kodev.oci.image import Image, Index

VOLUME = "kodev-live"
SWAP_TIMEOUT_S = 120.0


# --------------------------------------------------------------------------- decisions


def add_live_volume(data: Mapping[str, Any], is_kodev_image: Callable[[str], bool]
                    ) -> dict[str, Any]:
    """``data`` with the emptyDir the supervisor writes swapped binaries and kodata to,
    mounted at /kodev-live in every container (init containers too: their kodata is
    reached through it) that runs an image kodev built (a read-only root filesystem stays
    read-only)."""
    result = copy.deepcopy(dict(data))
    spec = pod_spec(result)
    if spec is None:
        return result
    mounted = False
    for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        if is_kodev_image(str(container.get("image", ""))):
            mounts = [m for m in container.get("volumeMounts") or [] if m.get("name") != VOLUME]
            container["volumeMounts"] = [*mounts, {"name": VOLUME, "mountPath": LIVE_DIR}]
            mounted = True
    if mounted:
        volumes = [v for v in spec.get("volumes") or [] if v.get("name") != VOLUME]
        spec["volumes"] = [*volumes, {"name": VOLUME, "emptyDir": {}}]  # type: ignore[index]
    return result


def frame(artifact: Image | Index) -> str:
    """A digest of everything in an image but its binary and kodata layers: equal frames
    mean a new image differs from the old one by what a live swap sends, so the swap
    gives exactly what a rollout would."""
    images = artifact.images if isinstance(artifact, Index) else [artifact]
    parts = [[[layer.digest for layer in _frame_layers(image)],
              image.config.get("config"), str(image.platform)] for image in images]
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def kodata_digest(artifact: Image | Index) -> str:
    """The digest of the kodata layer of a live image ("" for any other image)."""
    images = artifact.images if isinstance(artifact, Index) else [artifact]
    return ",".join(image.layers[-3].digest for image in images if _is_live(image))


def _is_live(image: Image) -> bool:
    entrypoint = image.config.get("config", {}).get("Entrypoint") or []
    return bool(entrypoint) and entrypoint[0] == IMAGE_PATH and len(image.layers) >= 3


def _frame_layers(image: Image) -> list[Any]:
    """Layers but the binary (top) and, in a live image, kodata (below the supervisor)."""
    if _is_live(image):
        return [*image.layers[:-3], image.layers[-2]]
    return list(image.layers[:-1])


def live_blocker(old_frame: str | None, artifact: Image | Index,
                 binaries: Mapping[Any, BuiltBinary]) -> str | None:
    """Why this new image cannot go live (one line), or None when it can."""
    images = artifact.images if isinstance(artifact, Index) else [artifact]
    if any(image.platform.os != "linux" for image in images):
        return "live swaps need Linux containers"
    if len(binaries) != 1:
        return "a live swap sends one binary; this image is built for several platforms"
    if not all(_is_live(image) for image in images):
        return "the image has no live supervisor"
    if old_frame is None:
        return "nothing of it runs yet"
    if frame(artifact) != old_frame:
        return "the image changed beyond its binary and kodata (base image or config)"
    return None


# --------------------------------------------------------------------------- acting


@dataclass(frozen=True)
class PodContainer:
    pod: str
    uid: str
    container: str
    grace_seconds: int


@dataclass(frozen=True)
class SwapOutcome:
    target: PodContainer
    error: str | None  # None: the new binary runs
    forbidden: bool = False


@dataclass
class Opened:
    """An exec stream to one container's ``kodev-live swap``, opened before the binary
    exists (or why it could not be)."""

    target: PodContainer
    session: ExecSession | None
    failure: SwapOutcome | None = None


class LiveSwapper:
    """Streams binaries into running containers, several Pods at once. The exec streams
    can be opened while ``go build`` runs (:meth:`open`), so their handshake through the
    API server and the kubelet costs nothing when the binary is ready."""

    def __init__(self, cluster: Cluster, jobs: int = 8) -> None:
        self.cluster = cluster
        # Two pools: a swap waits for its stream to open, so they must not share workers.
        self._opening = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="live-open")
        self._swapping = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="live-swap")

    def close(self) -> None:
        for pool in (self._opening, self._swapping):
            pool.shutdown(wait=False, cancel_futures=True)

    def open(self, namespace: str, targets: Iterable[PodContainer]
             ) -> dict[PodContainer, Future[Opened]]:
        return {t: self._opening.submit(self._open, namespace, t) for t in targets}

    def abort(self, opened: Iterable[Future[Opened]]) -> None:
        """Streams opened for a build that changed nothing (or failed): the swap command
        is told so and exits without touching anything."""
        for future in opened:
            future.add_done_callback(self._abort_when_open)

    def _abort_when_open(self, future: Future[Opened]) -> None:
        with contextlib.suppress(RuntimeError):  # shutting down: the stream just closes
            self._swapping.submit(self._abort, future.result())

    def swap(self, namespace: str, targets: Sequence[PodContainer], binary: BuiltBinary,
             opened: Mapping[PodContainer, Future[Opened]] | None = None,
             kodata: bytes | None = None) -> list[SwapOutcome]:
        """Send the binary (and a tar of new kodata) to each target; what happened."""
        data = Path(binary.path).read_bytes()
        header = f"{binary.sha256} {len(data)}"
        ready = opened or {}
        futures = [self._swapping.submit(self._swap_one, ready.get(t), namespace, t, header,
                                         data, kodata) for t in targets]
        return [f.result() for f in futures]

    def _open(self, namespace: str, target: PodContainer) -> Opened:
        from kodev.kube.exec import ExecForbidden, ExecSession

        try:
            session = ExecSession(self.cluster, namespace, target.pod, target.container,
                                  [IMAGE_PATH, "swap"], timeout=SWAP_TIMEOUT_S)
        except ExecForbidden as exc:
            return Opened(target, None, SwapOutcome(target, str(exc), forbidden=True))
        except KodevError as exc:
            return Opened(target, None, SwapOutcome(target, str(exc)))
        return Opened(target, session)

    def _abort(self, opened: Opened) -> None:
        if opened.session is not None:
            with contextlib.suppress(KodevError):
                opened.session.send(b"abort\n")
                opened.session.finish()

    def _swap_one(self, opened: Future[Opened] | None, namespace: str, target: PodContainer,
                  header: str, data: bytes, kodata: bytes | None) -> SwapOutcome:
        stream = opened.result() if opened is not None else self._open(namespace, target)
        if stream.session is None:
            assert stream.failure is not None
            return stream.failure
        line = f"{header} {target.grace_seconds}"
        if kodata is not None:
            line += f" {hashlib.sha256(kodata).hexdigest()} {len(kodata)}"
        try:
            stream.session.send(f"{line}\n".encode() + data + (kodata or b""))
            result = stream.session.finish()
        except KodevError as exc:
            return SwapOutcome(target, str(exc))
        if result.exit_code == 0:
            return SwapOutcome(target, None)
        why = (result.stderr.strip().splitlines() or [result.message])[-1]
        if result.exit_code == 3 or "not found" in result.message \
                or "no such file" in result.message:
            why = "the container was not started in live mode (no live supervisor)"
        return SwapOutcome(target, f"pod {target.pod}: {why}")


def running_targets(pods: Iterable[Mapping[str, Any]], containers: Iterable[str]
                    ) -> list[PodContainer]:
    """The containers of these Pods that run now (not terminating), to swap into."""
    wanted = set(containers)
    targets: list[PodContainer] = []
    for pod in pods:
        metadata = pod.get("metadata") or {}
        if metadata.get("deletionTimestamp"):
            continue
        grace = int((pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            if status.get("name") in wanted and "running" in (status.get("state") or {}):
                targets.append(PodContainer(str(metadata.get("name")), str(metadata.get("uid")),
                                            str(status["name"]), grace))
    return targets
