"""Give every Pod of the test environment its own log files (stdlib only).

KWOK serves ``GET pods/log`` from files named in ``Logs``/``ClusterLogs`` objects,
but a ``logsFile`` cannot be templated per Pod. This small daemon, started by
``up.sh``, watches Pods and for each scheduled Pod:

1. creates ``<podlogs>/<namespace>/<pod>/<container>.log`` (and
   ``<container>.previous.log``) for every container and init container;
2. creates or replaces a namespaced ``kwok.x-k8s.io/v1alpha1`` ``Logs`` object
   named like the Pod (owned by the Pod, so it is garbage-collected with it);
3. annotates the Pod with ``testenv.kodev.dev/logs``.

KWOK's ``pod-ready`` stage is configured to wait for that annotation, so a Pod is
only Ready once its logs are routed: anything that streams logs after readiness
reads the per-Pod file, and lines appended to it later arrive on ``follow``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

ANNOTATION = "testenv.kodev.dev/logs"
UID_FILE = ".uid"


class Api:
    def __init__(self, server: str, ca: str, cert: str, key: str) -> None:
        self.server = server.rstrip("/")
        self.ctx = ssl.create_default_context(cafile=ca)
        self.ctx.load_cert_chain(cert, key)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float = 30.0,
    ) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", content_type)
        with urllib.request.urlopen(req, context=self.ctx, timeout=timeout) as resp:
            return json.loads(resp.read() or b"null")

    def stream(self, path: str, timeout: float) -> Any:
        req = urllib.request.Request(self.server + path)
        req.add_header("Accept", "application/json")
        return urllib.request.urlopen(req, context=self.ctx, timeout=timeout)


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def container_names(pod: dict[str, Any]) -> list[str]:
    spec = pod.get("spec", {})
    names: list[str] = []
    for key in ("initContainers", "containers", "ephemeralContainers"):
        names.extend(c["name"] for c in spec.get(key) or [])
    return names


def prepare_files(podlogs: str, pod: dict[str, Any]) -> dict[str, tuple[str, str]]:
    meta = pod["metadata"]
    pod_dir = os.path.join(podlogs, meta["namespace"], meta["name"])
    os.makedirs(pod_dir, exist_ok=True)
    uid_path = os.path.join(pod_dir, UID_FILE)
    try:
        with open(uid_path) as f:
            old_uid = f.read().strip()
    except FileNotFoundError:
        old_uid = ""
    fresh = bool(old_uid) and old_uid != meta["uid"]
    files: dict[str, tuple[str, str]] = {}
    for name in container_names(pod):
        current = os.path.join(pod_dir, f"{name}.log")
        previous = os.path.join(pod_dir, f"{name}.previous.log")
        for path in (current, previous):
            # A new Pod that reuses an old name starts with empty logs; lines fed
            # before the first incarnation existed are kept.
            with open(path, "w" if fresh else "a"):
                pass
        files[name] = (current, previous)
    with open(uid_path, "w") as f:
        f.write(meta["uid"])
    return files


def route(api: Api, podlogs: str, pod: dict[str, Any]) -> None:
    meta = pod["metadata"]
    ns, name = meta["namespace"], meta["name"]
    files = prepare_files(podlogs, pod)
    obj: dict[str, Any] = {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "Logs",
        "metadata": {
            "name": name,
            "namespace": ns,
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Pod", "name": name, "uid": meta["uid"]}
            ],
        },
        "spec": {
            "logs": [
                {"containers": [c], "logsFile": cur, "previousLogsFile": prev, "follow": True}
                for c, (cur, prev) in files.items()
            ]
        },
    }
    base = f"/apis/kwok.x-k8s.io/v1alpha1/namespaces/{ns}/logs"
    try:
        api.request("POST", base, obj)
    except urllib.error.HTTPError as e:
        if e.code != 409:
            raise
        existing = api.request("GET", f"{base}/{name}")
        obj["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
        api.request("PUT", f"{base}/{name}", obj)
    patch = {"metadata": {"annotations": {ANNOTATION: os.path.join(podlogs, ns, name)}}}
    try:
        api.request(
            "PATCH",
            f"/api/v1/namespaces/{ns}/pods/{name}",
            patch,
            content_type="application/merge-patch+json",
        )
    except urllib.error.HTTPError as e:
        if e.code != 404:
            raise
    log(f"routed logs of {ns}/{name}")


def needs_route(pod: dict[str, Any]) -> bool:
    meta = pod.get("metadata", {})
    return (
        bool(pod.get("spec", {}).get("nodeName"))
        and not meta.get("deletionTimestamp")
        and ANNOTATION not in (meta.get("annotations") or {})
    )


def handle(api: Api, podlogs: str, pod: dict[str, Any]) -> None:
    if not needs_route(pod):
        return
    try:
        route(api, podlogs, pod)
    except urllib.error.HTTPError as e:
        meta = pod["metadata"]
        if e.code >= 500 or e.code == 429:
            raise
        # Permanent for this Pod (e.g. its namespace is terminating): skip it.
        log(f"routing {meta['namespace']}/{meta['name']} failed: {e}")


def run(api: Api, podlogs: str) -> None:
    selector = urllib.parse.quote("spec.nodeName!=")
    while True:
        try:
            lst = api.request("GET", f"/api/v1/pods?fieldSelector={selector}")
            for pod in lst.get("items", []):
                handle(api, podlogs, pod)
            rv = lst["metadata"]["resourceVersion"]
            while True:
                path = (
                    f"/api/v1/pods?watch=1&allowWatchBookmarks=true&timeoutSeconds=240"
                    f"&fieldSelector={selector}&resourceVersion={rv}"
                )
                with api.stream(path, timeout=300) as resp:
                    for raw in resp:
                        event = json.loads(raw)
                        kind, obj = event.get("type"), event.get("object", {})
                        if kind == "ERROR":
                            raise RuntimeError(f"watch error: {obj.get('message')}")
                        rv = obj.get("metadata", {}).get("resourceVersion", rv)
                        if kind in ("ADDED", "MODIFIED"):
                            handle(api, podlogs, obj)
        except (urllib.error.URLError, OSError, RuntimeError, ValueError, KeyError) as e:
            log(f"relisting after: {e}")
            time.sleep(0.5)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--server", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--podlogs", required=True)
    args = p.parse_args()
    api = Api(args.server, args.ca, args.cert, args.key)
    log(f"routing pod logs to {args.podlogs}")
    with contextlib.suppress(KeyboardInterrupt):
        run(api, os.path.abspath(args.podlogs))


if __name__ == "__main__":
    main()
