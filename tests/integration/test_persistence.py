"""
What the server acknowledges survives C{kill -9}: messages kept for offline
accounts are delivered exactly once after a restart, and room history stays.
"""

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from .support import (
    START_TIMEOUT,
    STORED_FOR,
    ChatConnection,
    ServerProcess,
    log_in,
    make_account,
    subprocess_environment,
)

pytestmark = pytest.mark.integration

STORED = STORED_FOR.format(nick="alice")


def start(directory: Path, run: int) -> ServerProcess:
    return ServerProcess(
        directory,
        "--db",
        str(directory / "chat.db"),
        "--flood-rate",
        "0",  # it sends in bursts on purpose
        log_name=f"run{run}.log",
    )


def test_acknowledged_messages_survive_kill_9_exactly_once(tmp_path):
    server = start(tmp_path, 1)
    try:
        make_account(server.port, "alice")
        bob = ChatConnection(server.port, "bob")
        bob.register("bob")
        acknowledged = []
        for n in range(40):
            bob.send(f"@alice:note {n}")
            bob.expect(STORED)
            acknowledged.append(f"note {n}")
        # More in flight, unacknowledged, as the server dies.
        for n in range(40, 200):
            bob.send(f"@alice:note {n}")
    finally:
        server.kill()
    bob.close()

    server = start(tmp_path, 2)
    try:
        alice, kept = log_in(server.port, "alice")
        assert kept[: len(acknowledged)] == acknowledged
        assert kept == [f"note {n}" for n in range(len(kept))], "in order, none twice"
        alice.close()
        again, kept_again = log_in(server.port, "alice")
        assert kept_again == [], "delivered messages are forgotten"
        again.close()
    finally:
        server.stop()
    assert "Traceback" not in server.log()


def test_room_history_survives_a_restart(tmp_path):
    server = start(tmp_path, 1)
    try:
        carol = ChatConnection(server.port, "carol")
        carol.register("carol")
        carol.send("/join #lobby")
        carol.expect("* carol joined #lobby")
        carol.expect("* #lobby (1): @carol")
        for n in range(3):
            carol.send(f"@#lobby:said {n}")
            carol.expect(f"#lobby <carol> said {n}")
        carol.close()
    finally:
        server.stop()

    server = start(tmp_path, 2)
    try:
        dave = ChatConnection(server.port, "dave")
        dave.register("dave")
        dave.send("/join #LOBBY")
        dave.expect("* dave joined #LOBBY")
        dave.expect("* #LOBBY (1): @dave")
        dave.expect("* history of #LOBBY: 3 messages follow")
        for n in range(3):
            dave.expect_match(rf"\[[-0-9T:]+Z\] #LOBBY <carol> said {n}")
        dave.close()
    finally:
        server.stop()


def test_a_server_that_cannot_listen_leaves_no_database_behind(tmp_path):
    """As C{scripts/serve} on a port already taken: no fresh, empty chatroute.db."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        twistd = str(Path(sys.executable).with_name("twistd"))
        finished = subprocess.run(
            [twistd, "--nodaemon", "--pidfile=", "chatroute", "--port", str(port)],
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=subprocess_environment(),
            timeout=START_TIMEOUT,
        )
    assert finished.returncode != 0, finished.stdout
    assert f"cannot listen on tcp:{port}" in finished.stdout + finished.stderr
    assert list(tmp_path.iterdir()) == []
