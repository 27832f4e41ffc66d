"""The terminal client's parts, over in-memory transports."""

import pytest
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.python.usage import UsageError

from chatroute.client import ClientOptions, PipeScreen, ServerConnection, conceal, printable


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
    with pytest.raises(UsageError):
        ClientOptions().parseOptions(["--port", "twelve"])


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
