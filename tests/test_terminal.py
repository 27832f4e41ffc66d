"""The terminal screen, rendered by a VT100 emulator (pyte)."""

import pyte
import pytest
from twisted.conch.insults.insults import ServerProtocol
from twisted.internet.testing import StringTransport

from chatroute.terminal import TerminalScreen


class Terminal:
    """A TerminalScreen on an in-memory terminal, rendered by a VT100 emulator."""

    def __init__(self, columns: int = 40) -> None:
        self.sent: list[bytes] = []
        self.quits: list[None] = []
        self.input = TerminalScreen(
            self.sent.append, lambda: self.quits.append(None), lambda: columns
        )
        self.output = StringTransport()
        ServerProtocol(lambda: self.input).makeConnection(self.output)
        self.screen = pyte.Screen(columns, 6)
        self.stream = pyte.ByteStream(self.screen)

    def type(self, keys: bytes) -> None:
        self.input.terminal.dataReceived(keys)

    def lines(self) -> list[str]:
        # The client's tty keeps output post-processing on: LF moves to column 0.
        self.stream.feed(self.output.value().replace(b"\n", b"\r\n"))
        self.output.clear()
        return [line.rstrip() for line in self.screen.display]


def test_keeps_the_typed_line_while_messages_arrive():
    terminal = Terminal()
    terminal.type(b"@bob:half a li")
    terminal.input.show("<bob> first")
    terminal.input.show("<bob> second")
    assert terminal.lines()[:3] == ["<bob> first", "<bob> second", "> @bob:half a li"]
    assert (terminal.screen.cursor.y, terminal.screen.cursor.x) == (2, len("> @bob:half a li"))
    terminal.type(b"ne\r")
    assert terminal.sent == [b"@bob:half a line"]
    assert terminal.lines()[:4] == ["<bob> first", "<bob> second", "> @bob:half a line", ">"]


@pytest.mark.parametrize("length", [17, 18, 19, 30, 38])
def test_redraws_a_wrapped_line_whole(length):
    terminal = Terminal(columns=10)
    typed = "x" * length
    terminal.type(typed.encode() + b"\x1b[D" * 3)
    terminal.input.show("<bob> hi")
    text = "> " + typed
    rows = [text[start : start + 10] for start in range(0, len(text), 10)]
    assert terminal.lines()[: 1 + len(rows)] == ["<bob> hi", *rows]
    cursor = len(text) - 3
    assert (terminal.screen.cursor.y, terminal.screen.cursor.x) == (1 + cursor // 10, cursor % 10)


def test_keeps_the_cursor_where_the_user_left_it():
    terminal = Terminal()
    terminal.type(b"@bob:helo\x1b[D")
    terminal.input.show("* news")
    terminal.type(b"l\r")
    assert terminal.sent == [b"@bob:hello"]


def test_edits_multibyte_characters_whole():
    terminal = Terminal()
    terminal.type("@bob:héé".encode() + b"\x7f\r")
    assert terminal.sent == ["@bob:hé".encode()]


def test_history():
    terminal = Terminal()
    terminal.type(b"@bob:one\r")
    terminal.type(b"\x1b[A\r")
    assert terminal.sent == [b"@bob:one", b"@bob:one"]


@pytest.mark.parametrize(("keys", "quits"), [(b"\x03", True), (b"\x04", True), (b"x\x04", False)])
def test_quit_keys(keys, quits):
    terminal = Terminal()
    terminal.type(keys)
    assert bool(terminal.quits) is quits


def test_editing_inside_a_wrapped_line():
    terminal = Terminal(columns=10)
    terminal.type(b"abcdefghijklmnopqrstuvwxyz" + b"\x1b[D" * 15 + b"\x7f" + b"\x1b[3~")
    text = "> abcdefghijmnopqrstuvwxyz"
    assert terminal.lines()[:3] == [text[:10], text[10:20], text[20:]]
    cursor = len("> abcdefghij")
    assert (terminal.screen.cursor.y, terminal.screen.cursor.x) == divmod(cursor, 10)
    terminal.type(b"\x1b[H!\x1b[F?\r")
    assert terminal.sent == [b"!abcdefghijmnopqrstuvwxyz?"]


def test_history_replaces_a_wrapped_line_whole():
    terminal = Terminal(columns=10)
    terminal.type(b"short\r" + b"a much longer line here")
    terminal.type(b"\x1b[A")
    assert terminal.lines()[:3] == ["> short", "> short", ""]


def test_passwords_are_hidden_on_screen_and_in_history():
    sent = []
    screen = TerminalScreen(sent.append, lambda: None, lambda: 40, lambda line: line[:7] + b"***")
    output = StringTransport()
    ServerProtocol(lambda: screen).makeConnection(output)
    screen.terminal.dataReceived(b"#alice secret\r")
    assert sent == [b"#alice secret"]
    emulator = pyte.Screen(40, 4)
    pyte.ByteStream(emulator).feed(output.value().replace(b"\n", b"\r\n"))
    assert emulator.display[0].rstrip() == "> #alice ***"
    assert "secret" not in "".join(emulator.display)
    assert screen.historyLines == [b"#alice ***"]
