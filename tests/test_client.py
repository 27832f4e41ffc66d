"""The terminal client's parts, over in-memory transports."""

import pyte
import pytest
from twisted.conch.insults.insults import ServerProtocol
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.python.usage import UsageError

from chatroute.client import ClientOptions, PipeInput, ServerConnection, TerminalInput, printable


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
    pipe = PipeInput(connection)
    stdout = StringTransport()
    pipe.makeConnection(stdout)
    pipe.dataReceived(b"#alice\r\n@bob:hi\n")
    assert sent(connection) == b"#alice\r\n@bob:hi\r\n"
    pipe.show("<bob> hello")
    assert stdout.value() == b"<bob> hello\n"
    pipe.readConnectionLost()
    assert sent(connection).endswith(b"/quit\r\n")


class Terminal:
    """A TerminalInput on an in-memory terminal, rendered by a VT100 emulator."""

    def __init__(self, connection: ServerConnection) -> None:
        self.input = TerminalInput(connection)
        self.output = StringTransport()
        ServerProtocol(lambda: self.input).makeConnection(self.output)
        self.screen = pyte.Screen(40, 6)
        self.stream = pyte.ByteStream(self.screen)

    def type(self, keys: bytes) -> None:
        self.input.terminal.dataReceived(keys)

    def lines(self) -> list[str]:
        # The client's tty keeps output post-processing on: LF moves to column 0.
        self.stream.feed(self.output.value().replace(b"\n", b"\r\n"))
        self.output.clear()
        return [line.rstrip() for line in self.screen.display]


def test_terminal_keeps_the_typed_line_while_messages_arrive(connection):
    terminal = Terminal(connection)
    terminal.type(b"@bob:half a li")
    terminal.input.show("<bob> first")
    terminal.input.show("<bob> second")
    assert terminal.lines()[:3] == ["<bob> first", "<bob> second", "> @bob:half a li"]
    assert (terminal.screen.cursor.y, terminal.screen.cursor.x) == (2, len("> @bob:half a li"))
    terminal.type(b"ne\r")
    assert sent(connection) == b"@bob:half a line\r\n"
    assert terminal.lines()[:4] == ["<bob> first", "<bob> second", "> @bob:half a line", ">"]


def test_terminal_keeps_the_cursor_where_the_user_left_it(connection):
    terminal = Terminal(connection)
    terminal.type(b"@bob:helo\x1b[D")
    terminal.input.show("* news")
    terminal.type(b"l\r")
    assert sent(connection) == b"@bob:hello\r\n"


def test_terminal_edits_multibyte_characters_whole(connection):
    terminal = Terminal(connection)
    terminal.type("@bob:héé".encode() + b"\x7f\r")
    assert sent(connection) == "@bob:hé\r\n".encode()


def test_terminal_history(connection):
    terminal = Terminal(connection)
    terminal.type(b"@bob:one\r")
    terminal.type(b"\x1b[A\r")
    assert sent(connection) == b"@bob:one\r\n@bob:one\r\n"


@pytest.mark.parametrize(("keys", "quits"), [(b"\x03", True), (b"\x04", True), (b"x\x04", False)])
def test_terminal_quit_keys(connection, keys, quits):
    terminal = Terminal(connection)
    terminal.type(keys)
    assert (sent(connection) == b"/quit\r\n") is quits
