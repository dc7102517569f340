"""``kodev login`` / ``kodev logout``: docker's commands, checked against the registry first."""

from __future__ import annotations

import argparse
import getpass
import os
import sys

from kodev.errors import RegistryError, UsageError
from kodev.oci.reference import DOCKER_HUB
from kodev.registry.auth import is_docker_hub, server_url_for

PASSWORD_FLAG_WARNING = "WARNING! Using --password via the CLI is insecure. Use --password-stdin."


def registry_host(text: str) -> str:
    """``https://ghcr.io/v2/`` -> ``ghcr.io``; Docker Hub's aliases -> ``index.docker.io``."""
    host = text.strip()
    for scheme in ("https://", "http://"):
        if host.lower().startswith(scheme):
            host = host[len(scheme):]
    host = host.split("/", 1)[0]
    if not host:
        raise UsageError(f"{text!r} is not a registry", hint="pass a host such as ghcr.io")
    return DOCKER_HUB if is_docker_hub(host) else host


def read_secret(args: argparse.Namespace) -> tuple[str, str]:
    """(username, password) from the flags, stdin, or a prompt on a terminal."""
    username = args.username
    if args.password is not None and args.password_stdin:
        raise UsageError("--password and --password-stdin are mutually exclusive")
    if args.password_stdin:
        if not username:
            raise UsageError("--password-stdin needs --username")
        password = sys.stdin.read().removesuffix("\n").removesuffix("\r")
    elif args.password is not None:
        print(PASSWORD_FLAG_WARNING, file=sys.stderr)
        password = args.password
    elif sys.stdin.isatty():
        username = username or input("Username: ").strip()
        password = getpass.getpass("Password: ")
    else:
        raise UsageError("no password given and stdin is not a terminal",
                         hint="pipe the password in with --password-stdin")
    if not username:
        raise UsageError("no username given", hint="pass -u USER")
    if not password:
        raise UsageError("the password is empty")
    return username, password


def login(args: argparse.Namespace) -> int:
    from kodev.registry.auth import StaticKeychain
    from kodev.registry.client import RegistryClient
    from kodev.registry.dockerconfig import store_credentials
    from kodev.registry.errors import RegistryUnauthorized

    host = registry_host(args.registry)
    username, password = read_secret(args)
    keychain = StaticKeychain(host, username, password)
    with RegistryClient(host, insecure=args.insecure_registry, keychain=keychain,
                        max_attempts=2) as client:
        try:
            client.ping()
        except RegistryUnauthorized as exc:
            raise RegistryError(
                f"login to {host} failed: the registry rejected the credentials of user "
                f"{username}; nothing was stored",
                hint="check the user name and the password or token") from exc
    where = store_credentials(host, username, password, os.environ)
    print(f"credentials for {server_url_for(host)} stored in {where}", file=sys.stderr)
    print("Login Succeeded")
    return 0


def logout(args: argparse.Namespace) -> int:
    from kodev.registry.dockerconfig import erase_credentials

    host = registry_host(args.registry)
    server = server_url_for(host)
    if erase_credentials(host, os.environ):
        print(f"Removing login credentials for {server}")
    else:
        print(f"Not logged in to {server}")
    return 0


def run(args: argparse.Namespace) -> int:
    return logout(args) if args.command == "logout" else login(args)
