"""The terminal screen, rendered by a VT100 emulator (pyte)."""

import pyte
import pytest
from twisted.internet.testing import StringTransport

from chatroute.client.main import split_password
from chatroute.client.terminal import Keyboard, TerminalScreen


class Terminal:
    """A TerminalScreen on an in-memory terminal, rendered by a VT100 emulator."""

    def __init__(self, columns: int = 40, rows: int = 6) -> None:
        self.sent: list[bytes] = []
        self.quits: list[None] = []
        self.input = TerminalScreen(self.send, lambda: self.quits.append(None), lambda: columns)
        self.output = StringTransport()
        Keyboard(lambda: self.input).makeConnection(self.output)
        self.screen = pyte.Screen(columns, rows)
        self.stream = pyte.ByteStream(self.screen)

    def send(self, line: bytes) -> bool:
        self.sent.append(line)
        return True

    def type(self, keys: bytes) -> None:
        self.input.terminal.dataReceived(keys)

    def lines(self) -> list[str]:
        # The client's tty keeps output post-processing on: LF moves to column 0.
        self.stream.feed(self.output.value().replace(b"\n", b"\r\n"))
        self.output.clear()
        return [line.rstrip() for line in self.screen.display]

    def cursor(self) -> tuple[int, int]:
        self.lines()
        return self.screen.cursor.y, self.screen.cursor.x


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


@pytest.mark.parametrize(
    ("keys", "line"),
    [
        (b"abc\x01X", b"Xabc"),  # Ctrl-A: home
        (b"abc\x01\x05X", b"abcX"),  # Ctrl-E: end
        (b"abc\x02\x02X", b"aXbc"),  # Ctrl-B: left
        (b"abc\x01\x06X", b"aXbc"),  # Ctrl-F: right
        (b"abc\x08", b"ab"),  # Ctrl-H: backspace
        (b"abc\x02\x04", b"ab"),  # Ctrl-D on a non-empty line: delete
        (b"hello world" + b"\x02" * 5 + b"\x15", b"world"),  # Ctrl-U: delete to start
        (b"hello world" + b"\x02" * 5 + b"\x0b", b"hello "),  # Ctrl-K: delete to end
        (b"say hello world\x17", b"say hello "),  # Ctrl-W: delete the word before
        (b"say hello  \x17", b"say "),  # ... with the spaces after it
        (b"say hello world" + b"\x02" * 6 + b"\x17", b"say  world"),
        (b"\x17\x15\x0b\x08x", b"x"),  # on an empty line: nothing to delete
        ("日本 語".encode() + b"\x17", "日本 ".encode()),
        (b"abc\x0c", b"abc"),  # Ctrl-L: redraw
        (b"one\rtwo\r\x10\x10\x0e", b"two"),  # Ctrl-P, Ctrl-N: history
    ],
)
def test_readline_keys(keys, line):
    terminal = Terminal()
    terminal.type(keys + b"\r")
    assert terminal.sent[-1] == line


@pytest.mark.parametrize(
    "key",
    [bytes([byte]) for byte in [*range(0x20), 0x7F] if bytes([byte]) not in b"\x03\n\r"]
    + ["\u0085".encode(), "\u009b".encode()],
)
def test_control_characters_never_enter_the_line(key):
    terminal = Terminal()
    terminal.type(b"ab" + key + b"c\r")
    (line,) = terminal.sent
    assert b"c" in line
    assert line.decode().isprintable(), line


def test_ctrl_l_clears_the_screen_and_redraws_the_prompt_line_at_the_top():
    terminal = Terminal()
    terminal.type(b"@bob:hi there\x02\x02")
    terminal.input.show("<bob> one")
    terminal.input.show("<bob> two")
    terminal.type(b"\x0c")
    assert terminal.lines() == ["> @bob:hi there", "", "", "", "", ""]
    assert terminal.cursor() == (0, len("> @bob:hi the"))


def test_wide_characters_take_two_columns():
    terminal = Terminal()
    terminal.type("@bob:日本語".encode())
    assert terminal.lines()[0] == "> @bob:日本語"
    assert terminal.cursor() == (0, len("> @bob:") + 6)
    terminal.type(b"\x1b[D\x1b[D")
    assert terminal.cursor() == (0, len("> @bob:") + 2)
    terminal.type(b"!\r")
    assert terminal.sent == ["@bob:日!本語".encode()]


def test_a_wide_character_at_the_right_edge_goes_to_the_next_row():
    terminal = Terminal(columns=9)
    terminal.type("日本語日本語".encode())
    assert terminal.lines()[:3] == ["> 日本語", "日本語", ""]
    assert terminal.screen.buffer[0][8].data == " "  # the last column stays empty
    assert terminal.cursor() == (1, 6)
    terminal.type(b"\x1b[D" * 3)
    assert terminal.cursor() == (1, 0)
    terminal.type(b"\x1b[D")
    assert terminal.cursor() == (0, 6)
    terminal.input.show("<bob> hi")
    assert terminal.lines()[:4] == ["<bob> hi", "> 日本語", "日本語", ""]
    assert terminal.cursor() == (1, 6)


def test_a_wrapped_line_of_emoji_leaves_no_stale_rows():
    terminal = Terminal(columns=20, rows=10)
    for _ in range(60):
        terminal.type("😀".encode())
        prompts = [line for line in terminal.lines() if line.startswith(">")]
        assert len(prompts) == 1, terminal.lines()
    text = "> " + "😀" * 60
    rows = [text[:11], *(text[start : start + 10] for start in range(11, len(text), 10))]
    assert terminal.lines()[:8] == [*rows, ""]
    terminal.type(b"\x1b[D" * 7)
    terminal.input.show("<bob> hi")
    assert terminal.lines()[:9] == ["<bob> hi", *rows, ""]
    assert terminal.cursor() == (6, 8)
    terminal.type(b"\x1b[H\x7f\x1b[3~\r")
    assert terminal.sent == ["😀".encode() * 59]
    # The sent line filled its last row exactly: the next prompt comes right under it.
    assert terminal.lines()[1:9] == [*rows[:-1], ">", ""]


def test_a_paste_is_drawn_once():
    terminal = Terminal(columns=20, rows=12)
    pasted = "@bob:" + "日本語 abc " * 20
    terminal.type(pasted.encode())
    # One redraw: about the line's own size, where one per character would be ~200 times it.
    assert len(terminal.output.value()) < 2 * len(pasted.encode())
    assert terminal.lines()[:2] == ["> @bob:日本語 abc 日", "本語 abc 日本語 abc"]
    terminal.type(b"\r")
    assert terminal.sent == [pasted.encode()]


def test_a_combining_mark_edits_with_its_character():
    terminal = Terminal()
    terminal.type("cafe\u0301".encode())
    assert terminal.cursor() == (0, len("> cafe"))
    terminal.type(b"\x1b[D")
    assert terminal.cursor() == (0, len("> caf"))
    terminal.type(b"\x1b[C\x7f\r")
    assert terminal.sent == [b"caf"]


def test_history_keeps_multibyte_characters_whole():
    terminal = Terminal()
    terminal.type("日本語\r".encode())
    terminal.type(b"\x1b[A\x7f\r")
    assert terminal.sent == ["日本語".encode(), "日本".encode()]


def test_closing_erases_the_input_area():
    terminal = Terminal(columns=10)
    terminal.type(b"half typed text")
    terminal.input.show("* bye")
    terminal.input.close()
    assert terminal.lines() == ["* bye", "", "", "", "", ""]
    assert terminal.cursor() == (1, 0)
    assert terminal.output.disconnecting


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


def password_terminal() -> Terminal:
    terminal = Terminal()
    terminal.input = TerminalScreen(terminal.send, lambda: None, lambda: 40, split_password)
    terminal.output = StringTransport()
    Keyboard(lambda: terminal.input).makeConnection(terminal.output)
    return terminal


def test_passwords_are_masked_on_screen_without_their_length():
    terminal = password_terminal()
    terminal.type(b"#alice secret\r/register correct horse battery staple\r")
    assert terminal.sent == [b"#alice secret", b"/register correct horse battery staple"]
    shown = terminal.lines()
    assert shown[:3] == ["> #alice ********", "> /register ********", ">"]
    assert "secret" not in "".join(shown) and "horse" not in "".join(shown)


def test_a_recalled_password_line_sends_the_password_not_the_mask():
    """As a guest: /register refused, then #eve, then Up, Up, Enter."""
    terminal = password_terminal()
    terminal.type(b"/register longpassword\r#eve\r")
    terminal.type(b"\x1b[A\x1b[A")
    assert terminal.lines()[2] == "> /register ********"
    terminal.type(b"\r")
    assert terminal.sent == [b"/register longpassword", b"#eve", b"/register longpassword"]
    assert terminal.lines()[:4] == [
        "> /register ********",
        "> #eve",
        "> /register ********",
        ">",
    ]


@pytest.mark.parametrize("line", [b"#alice pw-one-two", b"/login alice pw-one-two"])
def test_a_recalled_login_sends_the_password_and_edits_it_whole(line):
    terminal = password_terminal()
    terminal.type(line + b"\r\x1b[A\r")
    assert terminal.sent == [line, line]
    terminal.type(b"\x1b[A\x7fnew-password\r")
    assert terminal.sent[-1] == line.rsplit(b" ", 1)[0] + b" new-password"
    assert "pw-one-two" not in "".join(terminal.lines())


def test_a_password_asked_for_is_not_shown_and_the_typed_line_comes_back():
    terminal = Terminal()
    terminal.type(b"@bob:half")
    answers = []
    terminal.input.ask_secret("password for carol: ", answers.append)
    terminal.type(b"hunter22")
    assert terminal.lines()[0] == "password for carol:"
    assert terminal.cursor() == (0, len("password for carol: "))
    terminal.type(b"\x1b[A\r")
    assert answers == [b"hunter22"] and terminal.sent == []
    assert terminal.lines()[0] == "> @bob:half"
    terminal.type(b"\r")
    assert terminal.sent == [b"@bob:half"]
    assert terminal.input.historyLines == [[bytes([c]) for c in b"@bob:half"]]
