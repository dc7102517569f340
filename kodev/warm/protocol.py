"""What the warm client and server agree on: which calls go to a server, which server
(the key), where its socket is, and the bytes on the wire. Standard library only, and
cheap modules only: the client imports this before anything else.

Wire format (one Unix stream socket per call):

* request: ``MAGIC``, a 4-byte big-endian length, then NUL-separated fields: the key
  material, the working directory, the umask (octal), the argument count, the arguments,
  then the environment as ``NAME=value``; sent with the caller's descriptors 0, 1 and 2
  (``SCM_RIGHTS``);
* replies, one ASCII line each: ``pid N`` (the child running the call), then
  ``exit N`` (``N`` < 0: killed by signal ``-N``); or ``stale`` (the server will not run
  it: the caller runs it cold).
"""

from __future__ import annotations

import os
import stat
import sys
import zlib
from collections.abc import Mapping, Sequence

MAGIC = b"KDW1"
MAX_REQUEST = 4 << 20  # an environment is a few KiB; a bigger request is refused
OFF = ("off", "0", "false", "no")
DEFAULT_IDLE_S = 600
ENV_MODE = "KODEV_SERVER"
ENV_DIR = "KODEV_SERVER_DIR"
ENV_IDLE = "KODEV_SERVER_IDLE"

# The calls a server runs: the one-shot commands that tools call over and over. Each
# entry is the command's words (after global options); the rest of argv follows.
DELEGATED: tuple[tuple[str, ...], ...] = (
    ("build",),
    ("publish",),
    ("skaffold", "build"),
    ("skaffold", "deps"),
)
GLOBAL_FLAGS = ("-v", "--verbose")
# Environment that Python reads while it starts (encodings, paths, flags): a server
# started under other values would not be the interpreter a cold run gets.
STARTUP_ENV_PREFIXES = ("PYTHON", "LC_")
STARTUP_ENV_NAMES = ("LANG", "LANGUAGE")

KODEV_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def enabled(environ: Mapping[str, str]) -> bool:
    return environ.get(ENV_MODE, "").strip().lower() not in OFF


def delegated(argv: Sequence[str]) -> bool:
    """Whether ``kodev ARGV`` is a call a warm server runs."""
    words = [a for a in argv if a not in GLOBAL_FLAGS]
    return any(tuple(words[: len(entry)]) == entry for entry in DELEGATED)


def idle_seconds(environ: Mapping[str, str]) -> float:
    try:
        value = float(environ.get(ENV_IDLE, "") or DEFAULT_IDLE_S)
    except ValueError:
        return DEFAULT_IDLE_S
    return value if value > 0 else DEFAULT_IDLE_S


def server_dir(environ: Mapping[str, str]) -> str | None:
    """The directory for sockets, created 0700; None when it is not this user's own
    (another user could then put a socket there that we would trust)."""
    base = environ.get(ENV_DIR) or os.path.join(
        environ.get("XDG_RUNTIME_DIR") or "/tmp", f"kodev-server-{os.getuid()}")
    try:
        os.makedirs(base, mode=0o700, exist_ok=True)
        info = os.lstat(base)
    except OSError:
        return None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        return None
    return base


def _namespace(name: str) -> str:
    try:
        return str(os.stat(f"/proc/self/ns/{name}").st_ino)
    except OSError:
        return "-"


def key_material(environ: Mapping[str, str]) -> bytes:
    """Everything that makes a warm child differ from a cold run before kodev's code
    runs (the interpreter, kodev's files, the start-up environment, user, namespaces)."""
    startup = sorted(
        f"{k}={v}" for k, v in environ.items()
        if k.startswith(STARTUP_ENV_PREFIXES) or k in STARTUP_ENV_NAMES
    )
    parts = [
        sys.executable, sys.version, repr(sys.flags), KODEV_DIR, str(os.getuid()),
        str(os.getgid()), _namespace("net"), _namespace("mnt"), _namespace("pid"), *startup,
    ]
    return "\x1f".join(parts).encode("utf-8", "surrogateescape")


def socket_path(directory: str, material: bytes) -> str:
    """``<dir>/<key>.sock``; the key is 64 bits of two CRCs (the server compares the
    whole material, so a collision only means a cold run)."""
    key = f"{zlib.crc32(material):08x}{zlib.crc32(material[::-1]):08x}"
    return os.path.join(directory, f"{key}.sock")


def sibling(socket_file: str, suffix: str) -> str:
    """``<key>.lock`` (held by the running server; holds its pid) or ``<key>.log``."""
    return socket_file[: -len(".sock")] + suffix


def alive(pid: int) -> bool:
    """Whether process ``pid`` still exists (a server, or a call's child)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


class Server:
    """A running server: its pid and socket."""

    __slots__ = ("pid", "socket")

    def __init__(self, pid: int, socket: str) -> None:
        self.pid = pid
        self.socket = socket


def running_servers(directory: str) -> list[Server]:
    """The servers whose lock is held (a lock nobody holds is a server that has ended)."""
    import fcntl

    found = []
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".lock"):
            continue
        try:
            fd = os.open(os.path.join(directory, name), os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:  # held: a server runs
            text = os.read(fd, 32).decode("ascii", "replace").strip()
            if text.isdigit():
                found.append(Server(int(text), os.path.join(directory, name[:-5] + ".sock")))
        finally:
            os.close(fd)
    return found


class Request:
    """One call: who may run it (``material``) and the caller's process state. A plain
    class: ``dataclasses`` and ``typing`` would add ~10-50 ms to every call's start."""

    __slots__ = ("argv", "cwd", "environ", "material", "umask")

    def __init__(self, material: bytes, cwd: bytes, umask: int, argv: list[bytes],
                 environ: dict[bytes, bytes]) -> None:
        self.material = material
        self.cwd = cwd
        self.umask = umask
        self.argv = argv
        self.environ = environ

    def _fields(self) -> tuple[object, ...]:
        return (self.material, self.cwd, self.umask, self.argv, self.environ)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Request) and self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]


def encode_request(request: Request) -> bytes:
    fields = [request.material, request.cwd, b"%o" % request.umask,
              b"%d" % len(request.argv), *request.argv,
              *(k + b"=" + v for k, v in request.environ.items())]
    body = b"\0".join(fields)
    return MAGIC + len(body).to_bytes(4, "big") + body


def body_length(header: bytes) -> int | None:
    """The body's length from the first 8 bytes; None when they are not a request."""
    if len(header) < 8 or header[:4] != MAGIC:
        return None
    length = int.from_bytes(header[4:8], "big")
    return length if length <= MAX_REQUEST else None


def decode_request(body: bytes) -> Request | None:
    fields = body.split(b"\0")
    try:
        material, cwd, umask, argc = fields[0], fields[1], int(fields[2], 8), int(fields[3])
    except (IndexError, ValueError):
        return None
    argv, rest = fields[4:4 + argc], fields[4 + argc:]
    if len(argv) != argc or any(b"=" not in item for item in rest):
        return None
    environ = dict(item.split(b"=", 1) for item in rest)
    return Request(material, cwd, umask, argv, environ)
