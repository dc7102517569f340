"""The warm server's pure parts: which calls it runs, the request's bytes, the key."""

from __future__ import annotations

import os
from pathlib import Path

from kodev.warm import protocol


def test_only_the_one_shot_build_commands_are_delegated() -> None:
    assert protocol.delegated(["build", "./cmd/app"])
    assert protocol.delegated(["-v", "publish", "./cmd/app"])
    assert protocol.delegated(["skaffold", "deps", "./cmd/app"])
    assert protocol.delegated(["skaffold", "build"])
    for argv in (["skaffold", "init"], ["up"], ["version"], ["server", "stop"], [],
                 ["--help"], ["resolve", "-f", "-"], ["skaffold"]):
        assert not protocol.delegated(argv), argv


def test_a_request_round_trips_with_any_bytes() -> None:
    request = protocol.Request(
        material=b"key", cwd=b"/tmp/\xffdir", umask=0o027,
        argv=[b"build", b"", b"with space", b"a=b"],
        environ={b"PATH": b"/bin", b"EMPTY": b"", b"EQ": b"x=y", b"RAW": b"\xfe"})
    wire = protocol.encode_request(request)
    length = protocol.body_length(wire[:8])
    assert length == len(wire) - 8
    assert protocol.decode_request(wire[8:]) == request


def test_a_request_with_no_environment_round_trips() -> None:
    request = protocol.Request(b"k", b"/", 0o022, [], {})
    assert protocol.decode_request(protocol.encode_request(request)[8:]) == request


def test_malformed_requests_are_refused() -> None:
    assert protocol.body_length(b"HTTP/1.1") is None
    assert protocol.body_length(protocol.MAGIC + (protocol.MAX_REQUEST + 1).to_bytes(4, "big")) \
        is None
    assert protocol.decode_request(b"only\0three\0fields") is None
    assert protocol.decode_request(b"k\0/\0022\05\0build") is None  # argc says 5
    assert protocol.decode_request(b"k\0/\0022\00\0NOEQUALS") is None


def test_the_key_follows_the_start_up_environment_only() -> None:
    base = {"PATH": "/bin", "LANG": "C.UTF-8"}
    key = protocol.key_material(base)
    assert protocol.key_material({**base, "KO_DOCKER_REPO": "x", "PATH": "/usr/bin"}) == key
    assert protocol.key_material({**base, "LANG": "de_DE.UTF-8"}) != key
    assert protocol.key_material({**base, "PYTHONPATH": "/elsewhere"}) != key
    assert protocol.key_material({**base, "LC_ALL": "C"}) != key
    assert protocol.socket_path("/d", key) != protocol.socket_path(
        "/d", protocol.key_material({**base, "LC_ALL": "C"}))


def test_off_and_idle_settings() -> None:
    assert protocol.enabled({})
    for value in ("off", "0", "false", "No", " OFF "):
        assert not protocol.enabled({"KODEV_SERVER": value})
    assert protocol.idle_seconds({}) == protocol.DEFAULT_IDLE_S
    assert protocol.idle_seconds({"KODEV_SERVER_IDLE": "2.5"}) == 2.5
    assert protocol.idle_seconds({"KODEV_SERVER_IDLE": "soon"}) == protocol.DEFAULT_IDLE_S
    assert protocol.idle_seconds({"KODEV_SERVER_IDLE": "-1"}) == protocol.DEFAULT_IDLE_S


def test_a_directory_others_can_write_is_not_used(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    assert protocol.server_dir({"KODEV_SERVER_DIR": str(shared)}) is None
    own = tmp_path / "own"
    assert protocol.server_dir({"KODEV_SERVER_DIR": str(own)}) == str(own)
    assert (os.stat(own).st_mode & 0o777) == 0o700
