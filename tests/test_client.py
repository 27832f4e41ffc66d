"""The terminal client's parts, over in-memory transports."""

from importlib import metadata

import pytest
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.python.usage import UsageError

from chatroute.client import (
    ClientOptions,
    PipeScreen,
    ServerConnection,
    conceal,
    main,
    printable,
)


@pytest.fixture
def connection():
    connection = ServerConnection()
    connection.makeConnection(StringTransport())
    return connection


def sent(connection: ServerConnection) -> bytes:
    return connection.transport.value()


def test_options():
    options = ClientOptions()
    options.parseOptions(["--host", "::1", "--port", "4000", "--nick", "alice"])
    assert (options["host"], options["port"], options["nick"]) == ("::1", 4000, "alice")
    defaults = ClientOptions()
    defaults.parseOptions([])
    assert (defaults["host"], defaults["port"], defaults["nick"]) == ("localhost", 12345, None)
    short = ClientOptions()
    short.parseOptions(["-p", "4000", "-n", "alice"])
    assert (short["port"], short["nick"]) == (4000, "alice")


@pytest.mark.parametrize("port", ["twelve", "0", "65536", "-1", "", "80x"])
def test_a_bad_port_is_a_clean_usage_error(port):
    with pytest.raises(UsageError) as raised:
        ClientOptions().parseOptions(["--port", port])
    assert str(raised.value) == f"invalid port {port!r}: a port is a number from 1 to 65535"


def test_a_leading_hash_in_the_nick_is_dropped():
    options = ClientOptions()
    options.parseOptions(["--nick", "#alice"])
    assert options["nick"] == "alice"
    with pytest.raises(UsageError):
        ClientOptions().parseOptions(["--nick", "#"])


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help(flag, capsys):
    with pytest.raises(SystemExit) as exited:
        ClientOptions().parseOptions([flag])
    assert exited.value.code == 0
    shown = capsys.readouterr().out
    assert shown.startswith("Usage: chatroute-client [--host HOST]")
    assert "      --host=" in shown  # no short form: -h is help
    assert "Exit status: 0 after a clean quit" in shown
    assert "C{" not in shown


def test_version(capsys):
    with pytest.raises(SystemExit) as exited:
        ClientOptions().parseOptions(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"chatroute-client {metadata.version('chatroute')}\n"


def test_version_when_not_installed(monkeypatch, capsys):
    def missing(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", missing)
    with pytest.raises(SystemExit):
        ClientOptions().parseOptions(["--version"])
    assert capsys.readouterr().out == "chatroute-client (unknown version: not installed)\n"


def test_usage_errors_exit_with_2(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--port", "abc"])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("chatroute-client: invalid port 'abc': a port is a number from 1")
    assert "Parameter type enforcement" not in error


def test_lines_from_the_server_are_displayed(connection):
    shown = []
    connection.display = shown.append
    connection.dataReceived("* hi\r\n<bob> héllo\n".encode())
    assert shown == ["* hi", "<bob> héllo"]


def test_control_characters_from_the_server_are_neutralised(connection):
    shown = []
    connection.display = shown.append
    connection.dataReceived(b"<evil> \x1b[2Jgone\r\n")
    assert shown == ["<evil> \ufffd[2Jgone"]
    assert printable("tab\tkept") == "tab\tkept"


def test_error_lines_from_the_server_are_counted(connection):
    connection.dataReceived(b"* registered as alice\r\n! no such user: bob\r\n")
    connection.dataReceived(b"<bob> ! not an error\r\n!x\r\n! nickname taken: carol\r\n")
    assert connection.refused == 2


def test_send_and_quit_words(connection):
    connection.send(b"@bob:hi")
    assert sent(connection) == b"@bob:hi\r\n"
    connection.transport.clear()
    connection.send(b"exit")
    connection.send(b"/QUIT")
    connection.quit()
    assert sent(connection) == b"/quit\r\n"


@pytest.mark.parametrize(("quit_first", "clean"), [(True, True), (False, False)])
def test_finished_tells_whether_the_user_quit(connection, quit_first, clean):
    results = []
    connection.finished.addCallback(results.append)
    if quit_first:
        connection.quit()
    connection.connectionLost(Failure(ConnectionError("gone")))
    assert results == [clean]


def test_pipe_input_sends_each_line_and_quits_at_end(connection):
    pipe = PipeScreen(connection)
    stdout = StringTransport()
    pipe.makeConnection(stdout)
    pipe.dataReceived(b"#alice\r\n@bob:hi\n")
    assert sent(connection) == b"#alice\r\n@bob:hi\r\n"
    pipe.show("<bob> hello")
    assert stdout.value() == b"<bob> hello\n"
    pipe.readConnectionLost()
    assert sent(connection).endswith(b"/quit\r\n")


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        (b"#alice secret123", b"#alice *********"),
        (b"/login Alice pw", b"/login Alice **"),
        (b"/LOGIN Alice pw", b"/LOGIN Alice **"),
        (b"/register hunter22", b"/register ********"),
        (b"/password old new1", b"/password *** ****"),
        (b"#alice", b"#alice"),
        (b"@bob:#x y", b"@bob:#x y"),
        (b"/join #x", b"/join #x"),
    ],
)
def test_conceal_passwords(line, shown):
    assert conceal(line) == shown
