"""Tiny local HTTP servers that play a misbehaving registry, and what they saw.

- :class:`FakeServer`: answers every request with a function of the request and records
  it (scheme, method, path, headers). With ``tls=`` it speaks TLS and plain http on the
  same port (the first byte of a connection decides), so an https -> http redirect to the
  same host and port can be observed.
- :class:`ConnectProxy`: an ``HTTPS_PROXY``/``HTTP_PROXY`` that lets kodev reach names
  which are not loopback (``base.kodev.test``) without leaving 127.0.0.1: ``CONNECT``
  tunnels and plain absolute-form requests go to the local address a name is routed to,
  and every attempt (also to unrouted names) is recorded.
- :func:`make_ca`: a test CA and a server certificate signed by it.

Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import datetime
import ipaddress
import select
import socket
import ssl
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Seen:
    """One request a fake server received."""

    scheme: str
    method: str
    path: str
    headers: dict[str, str]

    def header(self, name: str) -> str | None:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None


@dataclass
class Reply:
    """What a fake server answers: ``body`` bytes, or an iterable of pieces (sent
    chunked when no Content-Length is given)."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | Iterable[bytes] = b""


Handler = Callable[[Seen, "FakeServer"], Reply]


class _DualServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, owner: FakeServer, context: ssl.SSLContext | None) -> None:
        self.owner = owner
        self.context = context
        super().__init__(("127.0.0.1", 0), _FakeHandler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        scheme = "http"
        if self.context is not None:
            try:
                first = request.recv(1, socket.MSG_PEEK)
            except OSError:
                return
            if first == b"\x16":  # a TLS ClientHello
                try:
                    request = self.context.wrap_socket(request, server_side=True)
                except (ssl.SSLError, OSError) as exc:
                    self.owner.tls_failures.append(repr(exc))
                    return
                scheme = "https"
        handler = _FakeHandler(request, client_address, self, scheme=scheme)
        del handler


class _FakeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _DualServer

    def __init__(self, *args: Any, scheme: str = "http") -> None:
        self.scheme = scheme
        super().__init__(*args)

    def setup(self) -> None:
        super().setup()
        # headers and body are separate writes: without this, every answer on a kept-alive
        # connection waits for the client's delayed ACK (40 ms)
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        elif self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            _drain_chunked(self.rfile)
        seen = Seen(self.scheme, self.command, self.path, dict(self.headers.items()))
        owner = self.server.owner
        owner.record(seen)
        reply = owner.handler(seen, owner)
        self.send_response(reply.status)
        headers = dict(reply.headers)
        if isinstance(reply.body, bytes):
            headers.setdefault("Content-Length", str(len(reply.body)))
        elif "Content-Length" not in headers:
            headers["Transfer-Encoding"] = "chunked"
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command == "HEAD":
            return
        try:
            self._write_body(reply, chunked=headers.get("Transfer-Encoding") == "chunked")
        except OSError:
            self.close_connection = True

    def _write_body(self, reply: Reply, *, chunked: bool) -> None:
        if isinstance(reply.body, bytes):
            self.wfile.write(reply.body)
            return
        for piece in reply.body:
            if chunked:
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            else:
                self.wfile.write(piece)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


def _drain_chunked(rfile: Any) -> None:
    while True:
        size = int(rfile.readline().split(b";")[0].strip() or b"0", 16)
        if size == 0:
            rfile.readline()
            return
        rfile.read(size + 2)


class FakeServer:
    """A registry double on 127.0.0.1 answering with ``handler``; ``seen`` lists requests."""

    def __init__(self, handler: Handler, *, tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.seen: list[Seen] = []
        self.tls_failures: list[str] = []
        self._lock = threading.Lock()
        self._server = _DualServer(self, tls)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)

    def use_tls(self, context: ssl.SSLContext) -> None:
        """Present another certificate from now on."""
        self._server.context = context

    def requests(self) -> list[Seen]:
        with self._lock:
            return list(self.seen)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- proxy


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, owner: ConnectProxy) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _ProxyHandler)


class _ProxyHandler(BaseHTTPRequestHandler):
    server: _ProxyServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_CONNECT(self) -> None:
        owner = self.server.owner
        owner.record(("CONNECT", self.path))
        address = owner.routes.get(self.path.lower())
        if address is None:
            self.send_error(502, "no route")
            return
        try:
            upstream = socket.create_connection(address, timeout=10)
        except OSError:
            self.send_error(502, "upstream down")
            return
        self.send_response(200, "Connection established")
        self.end_headers()
        self.wfile.flush()
        _pipe(self.connection, upstream)
        self.close_connection = True

    def _plain(self) -> None:
        owner = self.server.owner
        owner.record((self.command, self.path))
        self.send_error(502, "plain http is not routed by this proxy")

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _plain


def _pipe(a: socket.socket, b: socket.socket) -> None:
    sockets = [a, b]
    try:
        while True:
            readable, _, _ = select.select(sockets, [], [], 30)
            if not readable:
                return
            for sock in readable:
                data = sock.recv(65536)
                if not data:
                    return
                (b if sock is a else a).sendall(data)
    except OSError:
        return
    finally:
        b.close()


class ConnectProxy:
    """An http proxy on 127.0.0.1: ``routes`` maps ``host:port`` (as CONNECT names it) to a
    local address; ``attempts`` lists (``CONNECT``, target) and (method, absolute URL) for
    plain http, which is never forwarded. Use it through ``HTTPS_PROXY``/``HTTP_PROXY`` with
    ``NO_PROXY=127.0.0.1,localhost`` so that loopback registries stay direct."""

    def __init__(self, routes: dict[str, tuple[str, int]] | None = None) -> None:
        self.routes = {k.lower(): v for k, v in (routes or {}).items()}
        self.attempts: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._server = _ProxyServer(self)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def env(self) -> dict[str, str]:
        """The environment that sends kodev's non-loopback traffic here."""
        return {"HTTPS_PROXY": self.url, "HTTP_PROXY": self.url, "ALL_PROXY": self.url,
                "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
                "https_proxy": self.url, "http_proxy": self.url, "all_proxy": self.url}

    def record(self, attempt: tuple[str, str]) -> None:
        with self._lock:
            self.attempts.append(attempt)

    def seen(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self.attempts)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> ConnectProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- TLS


@dataclass(frozen=True)
class TestCA:
    """A CA (``ca_path``, PEM) and one server certificate it signed (``cert_path``,
    ``key_path``) for the given names."""

    __test__ = False

    ca_path: Path
    cert_path: Path
    key_path: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_path, self.key_path)
        return context


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_ca(directory: Path, names: Iterable[str], *, label: str = "kodev test CA") -> TestCA:
    """A fresh CA and a server certificate for ``names`` (DNS names or IP addresses)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name(label)).issuer_name(_name(label))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True,
            crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    alt: list[x509.GeneralName] = []
    names = list(names)
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(names[0])).issuer_name(ca_cert.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path = directory / "ca.pem"
    cert_path = directory / "server.pem"
    key_path = directory / "server-key.pem"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption()))
    return TestCA(ca_path, cert_path, key_path)


# --------------------------------------------------------------------------- content


def image_reply(seen: Seen, repo: str, tag: str, manifest: bytes, media_type: str,
                blobs: dict[str, bytes]) -> Reply | None:
    """The answer of a read-only registry holding one image ``repo:tag`` (manifest by tag
    or digest, its blobs), or None when ``seen`` asks for something else."""
    import hashlib

    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    path = seen.path.split("?", 1)[0]
    if path == "/v2/":
        return Reply(200, {"Docker-Distribution-API-Version": "registry/2.0"}, b"{}")
    if path in (f"/v2/{repo}/manifests/{tag}", f"/v2/{repo}/manifests/{digest}"):
        return Reply(200, {"Content-Type": media_type, "Docker-Content-Digest": digest},
                     manifest)
    prefix = f"/v2/{repo}/blobs/"
    if path.startswith(prefix) and path[len(prefix):] in blobs:
        blob = blobs[path[len(prefix):]]
        return Reply(200, {"Content-Type": "application/octet-stream",
                           "Docker-Content-Digest": path[len(prefix):]}, blob)
    return None


def not_found() -> Reply:
    return Reply(404, {"Content-Type": "application/json"},
                 b'{"errors":[{"code":"NAME_UNKNOWN","message":"not here"}]}')
