"""Serve the provider over go-plugin: handshake, TLS, gRPC; exit fast.

``tf``'s servicer (``tf.provider.ProviderServicer``) maps the tfprotov6 calls onto
:class:`kodev.terraform.provider.KodevProvider`; this module replaces ``tf``'s runner,
because a plan starts the provider three times (schema, validate, plan) and the runner's
costs add up: it imports ``cryptography`` on every start to check its cached certificate,
polls for shutdown every 50 ms and then waits for the interpreter to wind down its gRPC
threads. Here:

- the server certificate (ECDSA P-256, self-signed, as go-plugin's own) is made once and
  kept in KOCACHE (0600) with its expiry beside it, so a start reads two PEM strings;
- the client's certificate is not asked for: go-plugin's (``PLUGIN_CLIENT_CERT``) is
  ECDSA P-521, which gRPC's BoringSSL does not offer to verify, so Go's client sends
  none and the handshake fails. The socket lives in a 0700 directory of its own: only
  the user who started Terraform can reach it;
- ``GRPCController.Shutdown`` ends the process at once (``os._exit`` after flushing);
  SIGINT is ignored, as by go-plugin's servers: the CLI, which gets the Ctrl-C too,
  decides.

The handshake line on stdout: ``1|6|unix|<socket>|grpc|<server certificate, base64 DER>``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from concurrent import futures
from pathlib import Path
from typing import Any

from kodev.cache import atomic_write, default_cache_dir

CORE_PROTOCOL_VERSION = 1
PLUGIN_PROTOCOL_VERSION = 6
_CERT_LIFETIME_SECONDS = 30 * 24 * 3600
_CERT_RENEW_MARGIN_SECONDS = 24 * 3600


def server_certificate(cache_root: Path) -> tuple[bytes, bytes]:
    """(certificate PEM, private key PEM), from KOCACHE or made now."""
    path = cache_root / "terraform" / "plugin-certificate.json"
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        data = json.loads(path.read_text())
        if float(data["not_after"]) - time.time() > _CERT_RENEW_MARGIN_SECONDS:
            return data["cert"].encode(), data["key"].encode()
    cert, key, not_after = _make_certificate()
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):  # a read-only cache: a new certificate next time
        atomic_write(path, json.dumps({"cert": cert.decode(), "key": key.decode(),
                                       "not_after": not_after}).encode())
        path.chmod(0o600)
    return cert, key


def _make_certificate() -> tuple[bytes, bytes, float]:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "kodev")])
    now = datetime.datetime.now(datetime.UTC)
    not_after = now + datetime.timedelta(seconds=_CERT_LIFETIME_SECONDS)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(seconds=30)).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]),
                       critical=False)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=True,
            data_encipherment=False, key_agreement=True, key_cert_sign=True, crl_sign=False,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                              ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem, not_after.timestamp()


def _der_base64(cert_pem: bytes) -> str:
    """The certificate as go-plugin's handshake carries it: base64 DER, no padding."""
    body = b"".join(line for line in cert_pem.splitlines() if not line.startswith(b"-----"))
    return base64.b64encode(base64.b64decode(body)).decode().rstrip("=")


def _exit_now(code: int = 0) -> None:
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


def serve(provider: Any) -> None:
    """Serve ``provider`` until Terraform shuts the plugin down; never returns."""
    import grpc
    from tf.gen import grpc_controller_pb2 as controller_pb
    from tf.gen import grpc_controller_pb2_grpc as controller_rpc
    from tf.gen import grpc_stdio_pb2_grpc as stdio_rpc
    from tf.gen import tfplugin_pb2 as pb
    from tf.gen import tfplugin_pb2_grpc as rpc
    from tf.provider import ProviderServicer

    # As go-plugin's servers do: Ctrl-C reaches the whole process group, and the CLI decides
    # (StopProvider, then Shutdown); a provider that died on it would fail the apply.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    done = threading.Event()

    class Servicer(ProviderServicer):  # type: ignore[misc]
        def StopProvider(self, request: Any, context: Any) -> Any:
            # "Stop what you are doing" (Ctrl-C), not "exit": go-plugin's Shutdown is that.
            return pb.StopProvider.Response()

    class Controller(controller_rpc.GRPCControllerServicer):  # type: ignore[misc]
        def Shutdown(self, request: Any, context: Any) -> Any:
            done.set()
            return controller_pb.Empty()

    class Stdio(stdio_rpc.GRPCStdioServicer):  # type: ignore[misc]
        def StreamStdio(self, request: Any, context: Any) -> Any:
            return iter(())  # stdout and stderr are not forwarded over gRPC

    cert, key = server_certificate(default_cache_dir())
    credentials = grpc.ssl_server_credentials([(key, cert)], require_client_auth=False)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    rpc.add_ProviderServicer_to_server(Servicer(provider), server)
    controller_rpc.add_GRPCControllerServicer_to_server(Controller(), server)
    stdio_rpc.add_GRPCStdioServicer_to_server(Stdio(), server)
    directory = tempfile.mkdtemp(prefix="kodev-plugin-")
    try:
        socket_path = os.path.join(directory, "plugin.sock")
        server.add_secure_port(f"unix://{socket_path}", credentials)
        server.start()
        sys.stdout.write(f"{CORE_PROTOCOL_VERSION}|{PLUGIN_PROTOCOL_VERSION}|unix|"
                         f"{socket_path}|grpc|{_der_base64(cert)}\n")
        sys.stdout.flush()
        done.wait()
        # Let the Shutdown response leave before the process goes.
        server.stop(grace=0.2).wait(0.5)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    _exit_now(0)
