"""
The real C{chatroute-client} process against the real server, its standard
input and output piped as a script or another program would use it.
"""

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from .support import ServerProcess

pytestmark = pytest.mark.integration

GREETING = r"\* connected from 127\.0\.0\.1:\d+ — register with #yourname"


def test_piped_input_is_delivered_before_the_client_exits(connect, start_client):
    """As in C{printf '#alice\\n@bob:hi\\n' | chatroute-client ...}."""
    bob = connect("bob")
    bob.register("bob")
    alice = start_client("alice")

    alice.send("#alice\n@bob:hi\n")
    alice.close_input()

    assert alice.wait() == 0, alice.stderr()
    bob.expect("<alice> hi")
    alice.stdout.expect_match(GREETING)
    assert alice.stdout.read_until_eof() == ["* registered as alice", "* bye"]
    assert alice.stderr() == ""


def test_quit_with_a_reason_exits_with_0_and_tells_the_rooms(connect, start_client):
    bob = connect("bob")
    bob.register("bob")
    bob.send("/join #lobby")
    bob.expect("* bob joined #lobby")
    bob.expect("* #lobby (1): @bob")
    alice = start_client("alice", "--nick", "alice")
    alice.stdout.expect_match(GREETING)
    alice.stdout.expect("* registered as alice")
    alice.send("/join #lobby\n")
    bob.expect("* alice joined #lobby")

    alice.send("/quit bye all\n")

    assert alice.wait() == 0, alice.stderr()
    bob.expect("* alice left #lobby (disconnected: bye all)")
    assert alice.stdout.read_until_eof() == [
        "* alice joined #lobby",
        "* #lobby (2): alice, @bob",
        "* bye",
    ]
    assert alice.stderr() == ""


def test_piped_session_exits_with_3_when_the_server_refused_a_line(start_client):
    alice = start_client("alice", "--nick", "#alice")

    alice.send("@nobody:hi\n/dance\n/who\n")
    alice.close_input()

    assert alice.wait() == 3, alice.stderr()
    alice.stdout.expect_match(GREETING)
    assert alice.stdout.read_until_eof() == [
        "* registered as alice",
        "! no such user: nobody",
        "! unknown command: /dance (try /help)",
        "* online (1): alice",
        "* bye",
    ]
    assert alice.stderr() == "lines refused by the server: 2\n"


def test_last_piped_line_without_a_newline_is_delivered(connect, start_client):
    """As in C{printf '#alice\n@bob:hi' | chatroute-client ...}."""
    bob = connect("bob")
    bob.register("bob")
    alice = start_client("alice")

    alice.send("#alice\n@bob:hi")
    alice.close_input()

    assert alice.wait() == 0, alice.stderr()
    # The server handled all of alice's lines before she could exit, so the
    # message comes before the answer to this /who, or not at all.
    bob.send("/who")
    bob.expect("<alice> hi")


def test_piped_input_longer_than_the_flood_burst_arrives_whole(connect, start_client):
    """The server's default flood limit (bursts of 20) holds; the client paces itself."""
    bob = connect("bob")
    bob.register("bob")
    alice = start_client("alice")

    alice.send("#alice\n" + "".join(f"@bob:line-{number}\n" for number in range(40)))
    alice.close_input()

    assert alice.wait(timeout=30) == 0, alice.stderr()
    for number in range(40):
        bob.expect(f"<alice> line-{number}")
    alice.stdout.expect_match(GREETING)
    assert alice.stdout.read_until_eof() == ["* registered as alice", "* bye"]


@pytest.mark.server_options("--flood-rate", "0")  # bursts on purpose
def test_long_piped_input_arrives_complete_and_in_order(connect, start_client):
    bob = connect("bob")
    bob.register("bob")
    alice = start_client("alice", "--nick", "alice")

    alice.send("".join(f"@bob:message {number}\n" for number in range(500)))
    alice.close_input()

    assert alice.wait() == 0, alice.stderr()
    for number in range(500):
        bob.expect(f"<alice> message {number}")
    bob.sync(["bob"])


@pytest.mark.server_options("--flood-rate", "0")  # bursts on purpose
def test_two_clients_talk_both_ways_at_once(start_client):
    alice = start_client("alice", "--nick", "alice")
    bob = start_client("bob", "--nick", "bob")
    for client in (alice, bob):
        client.stdout.expect_match(GREETING)
        client.stdout.expect(f"* registered as {client.name}")

    for number in range(20):
        alice.send(f"@bob:ping {number}\n")
        bob.send(f"@alice:pong {number}\n")
    for number in range(20):
        bob.stdout.expect(f"<alice> ping {number}")
    for number in range(20):
        alice.stdout.expect(f"<bob> pong {number}")

    alice.send("/join #pair\n")
    alice.stdout.expect("* alice joined #pair")
    alice.stdout.expect("* #pair (1): @alice")
    bob.send("/join #pair\n")
    bob.stdout.expect("* bob joined #pair")
    bob.stdout.expect("* #pair (2): @alice, bob")
    alice.stdout.expect("* bob joined #pair")
    bob.send("@#pair:both of us\n")
    bob.stdout.expect("#pair <bob> both of us")
    alice.stdout.expect("#pair <bob> both of us")

    bob.close_input()
    assert bob.stdout.read_until_eof() == ["* bye"]
    assert bob.wait() == 0, bob.stderr()
    alice.stdout.expect("* bob left #pair (disconnected)")
    alice.close_input()
    assert alice.stdout.read_until_eof() == ["* bye"]
    assert alice.wait() == 0, alice.stderr()


def test_client_reports_a_stopped_server_and_fails(server, start_client):
    carol = start_client("carol", "--nick", "carol")
    carol.stdout.expect_match(GREETING)
    carol.stdout.expect("* registered as carol")

    server.stop()

    assert carol.wait() == 1
    assert carol.stdout.read_until_eof() == ["* the server is shutting down; closing"]
    assert carol.stderr() == "the server closed the connection: the server is shutting down\n"


def test_client_reports_a_connection_lost_without_a_word(spawn_client):
    """A server that closes at once, as a TLS port does on a plain client's line."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        client = spawn_client("dan", "--host", "127.0.0.1", "--port", str(port))
        accepted, _ = silent.accept()
        accepted.close()
        assert client.wait() == 1
    assert "closed the connection without a word (is it a TLS port? then use --tls)" in (
        client.stderr()
    )


def test_client_fails_clearly_when_nothing_listens(spawn_client):
    # A port bound but not listening refuses connections, and no one else can take it.
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
        client = spawn_client("lonely", "--host", "127.0.0.1", "--port", str(port))
        status = client.wait()

    assert status == 1
    assert client.stdout.read_until_eof() == []
    error = client.stderr()
    assert error.startswith(f"cannot connect to 127.0.0.1:{port}: "), error
    assert "refused" in error, error


@pytest.fixture
def private_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server whose password is C{open sesame}."""
    directory = tmp_path / "server"
    directory.mkdir()
    (directory / "password").write_text("open sesame\n")
    running = ServerProcess(directory, "--server-password-file", str(directory / "password"))
    try:
        yield running
    finally:
        running.stop()


@pytest.mark.parametrize(
    ("password", "status", "lines", "error"),
    [
        (
            "open sesame",
            0,
            ["* server password accepted", "* registered as alice", "* online (1): alice", "* bye"],
            "",
        ),
        (
            "guess",
            1,
            ["! wrong server password; closing"],
            "the server closed the connection: wrong server password\n",
        ),
    ],
)
def test_piped_input_gives_the_server_password_from_a_file_first(
    private_server, spawn_client, tmp_path, password, status, lines, error
):
    secret = tmp_path / "secret"
    secret.write_text(f"{password}\n")
    alice = spawn_client(
        "alice", "--host", "127.0.0.1", "--port", str(private_server.port), "--nick", "alice",
        "--server-password-file", str(secret),
    )  # fmt: skip
    alice.send("/who\n")
    alice.close_input()

    assert alice.wait() == status, alice.stderr()
    alice.stdout.expect_match(
        r"\* connected from 127\.0\.0\.1:\d+ — this server has a password: /pass PASSWORD first, "
        "then register with #yourname"
    )
    assert alice.stdout.read_until_eof() == lines
    assert alice.stderr() == error
