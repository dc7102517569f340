"""TCP forwarders from the root network namespace's 127.0.0.1 into the test
environment's network namespace (Python stdlib only; started by up.sh).

    forward.py NETNS_PATH PORT[:INSIDE] [PORT[:INSIDE] ...]

For each PORT it listens on 127.0.0.1:PORT in the namespace it was started in (the
machine's own), then joins NETNS_PATH, so every connection it opens afterwards
belongs to the test environment's namespace: a client's connection to
127.0.0.1:PORT outside is spliced to 127.0.0.1:INSIDE (default: PORT) inside. up.sh uses
the same number on both sides: that keeps the kubeconfig, the apiserver certificate's
127.0.0.1 SAN and the registry host (KEP-1755 ``host`` == ``hostFromContainerRuntime``)
valid from both. A test maps another outside port to the registry to prove that kodev
honours ``hostFromContainerRuntime`` when they differ.

Nothing is added to the root namespace but these listeners.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import sys
import threading

CLONE_NEWNET = 0x40000000
BUFSIZE = 256 * 1024


def join_netns(path: str) -> None:
    """setns(2) into the network namespace at ``path`` (Python 3.11 has no os.setns)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {path}: {os.strerror(err)}")
    finally:
        os.close(fd)


def pump(src: socket.socket, dst: socket.socket) -> None:
    """Copy ``src`` to ``dst`` until EOF, then half-close ``dst`` (keeps the other way open)."""
    try:
        while data := src.recv(BUFSIZE):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for sock, how in ((dst, socket.SHUT_WR), (src, socket.SHUT_RD)):
            with contextlib.suppress(OSError):
                sock.shutdown(how)


def serve_connection(client: socket.socket, port: int) -> None:
    try:
        upstream = socket.create_connection(("127.0.0.1", port), timeout=10)
    except OSError as e:
        print(f"forward: 127.0.0.1:{port} in the namespace: {e}", file=sys.stderr, flush=True)
        client.close()
        return
    upstream.settimeout(None)
    for sock in (client, upstream):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    back = threading.Thread(target=pump, args=(upstream, client), daemon=True)
    back.start()
    pump(client, upstream)
    back.join()
    client.close()
    upstream.close()


def accept_loop(listener: socket.socket, port: int) -> None:
    while True:
        client, _ = listener.accept()
        threading.Thread(target=serve_connection, args=(client, port), daemon=True).start()


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print("usage: forward.py NETNS_PATH PORT[:INSIDE] [PORT[:INSIDE] ...]", file=sys.stderr)
        return 2
    netns = argv[1]
    pairs = [(int(a), int(b or a)) for a, _, b in (arg.partition(":") for arg in argv[2:])]
    ports = [inside for _, inside in pairs]
    listeners = []
    for port, _ in pairs:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(128)
        listeners.append(listener)
    join_netns(netns)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    threads = [threading.Thread(target=accept_loop, args=(sock, port), daemon=True)
               for sock, port in zip(listeners, ports, strict=True)]
    for thread in threads:
        thread.start()
    print(f"forward: 127.0.0.1:{argv[2:]} -> {netns}", file=sys.stderr, flush=True)
    for thread in threads:
        thread.join()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
