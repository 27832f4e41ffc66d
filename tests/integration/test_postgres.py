"""
The real server on a real PostgreSQL (C{twistd chatroute --db postgresql://...}):
messages kept for offline accounts are there for the next server, and
PostgreSQL restarted under load loses no acknowledged message and doubles
none, with the server logging it and running on.
"""

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from .support import (
    READ_TIMEOUT,
    STORED_FOR,
    ChatConnection,
    ServerProcess,
    log_in,
    make_account,
)

pytestmark = pytest.mark.integration

STORED = STORED_FOR.format(nick="alice")
SENDERS = 4
PER_SENDER = 150
# Acknowledgements to wait for before PostgreSQL is restarted, so that it
# goes while most of the messages are still to come.
BEFORE_RESTART = 30
# A message waits for PostgreSQL to come back: its restart, and a retry.
RECOVERY_TIMEOUT = 60.0


def start(directory: Path, url: str, run: int = 1) -> ServerProcess:
    return ServerProcess(
        directory,
        "--db",
        url,
        "--flood-rate",
        "0",  # the senders send in bursts on purpose
        "--offline-cap",
        str(SENDERS * PER_SENDER),
        log_name=f"run{run}.log",
    )


def stopped_cleanly(server: ServerProcess) -> str:
    """Stop the server; its log, once checked that it exited cleanly with no traceback."""
    status = server.stop()
    log = server.log()
    assert status in (0, -signal.SIGTERM), f"twistd exited with {status}; its log:\n{log}"
    assert "Traceback" not in log, f"the server logged an error:\n{log}"
    return log


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[ServerProcess]]:
    """Servers a test starts, stopped after it whatever happens."""
    started: list[ServerProcess] = []
    yield started
    for server in started:
        server.stop()


def test_an_offline_message_is_kept_in_postgresql_for_the_next_server(
    tmp_path, postgres_url, servers
):
    servers.append(start(tmp_path, postgres_url))
    make_account(servers[0].port, "alice")
    bob = ChatConnection(servers[0].port, "bob")
    bob.register("bob")
    bob.send("@alice:are you there?")
    bob.expect(STORED)
    bob.close()
    log = stopped_cleanly(servers[0])
    assert "created postgresql://" in log

    servers.append(start(tmp_path, postgres_url, run=2))
    alice, kept = log_in(servers[1].port, "alice")
    assert kept == ["are you there?"]
    alice.close()
    again, kept_again = log_in(servers[1].port, "alice")
    assert kept_again == [], "delivered messages are forgotten"
    again.close()
    stopped_cleanly(servers[1])


def test_postgresql_restarted_under_load_loses_and_doubles_nothing(
    tmp_path, restart_postgres, postgres_url, servers
):
    server = start(tmp_path, postgres_url)
    servers.append(server)
    make_account(server.port, "alice")
    senders = []
    for s in range(SENDERS):
        sender = ChatConnection(server.port, f"bob{s}")
        sender.register(f"bob{s}")
        senders.append(sender)
    # Every message at once: the server takes each sender's next line once
    # the last is stored, so they keep coming all through the restart.
    for s, sender in enumerate(senders):
        for n in range(PER_SENDER):
            sender.send(f"@alice:{s}.{n}")

    acknowledged: list[str] = []
    refused: list[str] = []

    def read_reply(s: int, n: int, timeout: float) -> None:
        reply = senders[s].read_line(timeout)
        if reply == STORED:
            acknowledged.append(f"{s}.{n}")
        else:
            assert reply.startswith("! "), reply
            refused.append(reply)

    replies = [0] * SENDERS
    while len(acknowledged) < BEFORE_RESTART:
        read_reply(0, replies[0], READ_TIMEOUT)
        replies[0] += 1
    restart_postgres()
    for s in range(SENDERS):
        for n in range(replies[s], PER_SENDER):
            read_reply(s, n, RECOVERY_TIMEOUT)

    alice, kept = log_in(server.port, "alice")
    alice.close()
    for sender in senders:
        sender.close()
    log = stopped_cleanly(server)

    assert refused == [], "PostgreSQL was back well within the retry time"
    assert sorted(kept) == sorted(acknowledged), "every acknowledged message, each once"
    assert len(acknowledged) == SENDERS * PER_SENDER
    assert "lost PostgreSQL (" in log
    assert "PostgreSQL is back after " in log
