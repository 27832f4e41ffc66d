"""The terminal screen, rendered by a VT100 emulator (pyte)."""

import textwrap
from collections.abc import Callable

import pyte
import pytest
from twisted.internet.testing import StringTransport

from chatroute.client.main import split_password
from chatroute.client.terminal import Keyboard, TerminalScreen
from chatroute.core.errors import BadPassword
from chatroute.frontends.syntax import format_error
from tests.emulation import reflow


class Terminal:
    """A TerminalScreen on an in-memory terminal, rendered by a VT100 emulator."""

    def __init__(
        self,
        columns: int = 40,
        rows: int = 6,
        split: Callable[[bytes], tuple[bytes, bytes] | None] = lambda line: None,
    ) -> None:
        self.sent: list[bytes] = []
        self.quits: list[None] = []
        self.columns, self.rows = columns, rows
        self.input = TerminalScreen(
            self.send,
            lambda: self.quits.append(None),
            lambda: self.columns,
            split,
            rows=lambda: self.rows,
        )
        self.output = StringTransport()
        Keyboard(lambda: self.input).makeConnection(self.output)
        self.screen = pyte.HistoryScreen(columns, rows, history=1000)
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

    def scrollback(self) -> list[str]:
        """The rows scrolled off the top of the screen, oldest first."""
        self.lines()
        return [
            "".join(row[x].data for x in range(self.screen.columns)).rstrip()
            for row in self.screen.history.top
        ]

    def resize(self, columns: int, rows: int, reflows: bool) -> None:
        """Resize: the terminal rewraps its rows if it C{reflows}, else cuts them."""
        self.lines()
        if reflows:
            reflow(self.screen, columns, rows)
        else:
            self.screen.resize(rows, columns)
        self.columns, self.rows = columns, rows


def word_rows(line: str, columns: int) -> list[str]:
    """C{line} (ASCII, no tabs) cut into rows between words, as the client shows a message."""
    return textwrap.wrap(line, columns, break_on_hyphens=False) or [""]


def fresh(columns: int, rows: int, conversation: list[str], typed: str, cursor: int) -> Terminal:
    """
    A terminal that showed C{conversation} (ASCII, no tabs) and C{"> " +
    typed} at this size from the start, the cursor on C{typed[cursor]}: how
    a screen redrawn at that size must look.

    Not for wide characters at the right edge: pyte draws one into the last
    column, half cut off, where terminals take it to the next row.
    """
    terminal = Terminal(columns, rows)
    terminal.output.clear()  # its own screen's prompt
    shown = [row for line in conversation for row in word_rows(line, columns)]
    text = "".join(row + "\r\n" for row in shown) + "> " + typed[:cursor]
    terminal.stream.feed((text + "\x1b7" + typed[cursor:] + "\x1b8").encode())
    return terminal


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
    terminal = Terminal(columns=20, rows=14)
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
    return Terminal(split=split_password)


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


CONVERSATION = ["* registered as alice", "<bob> " + "a message that wraps " * 3]
TYPED = "@bob:" + "the line being typed " * 4
RESIZES = pytest.mark.parametrize("reflows", [True, False], ids=["reflowing", "cutting"])


def chatting(columns: int = 40, rows: int = 12) -> Terminal:
    """A terminal that showed L{CONVERSATION}, L{TYPED} half typed, the cursor 5 from its end."""
    terminal = Terminal(columns, rows)
    for line in CONVERSATION:
        terminal.input.show(line)
    terminal.type(TYPED.encode() + b"\x1b[D" * 5)
    return terminal


@RESIZES
@pytest.mark.parametrize(
    ("columns", "rows"),
    [(25, 12), (17, 14), (60, 8), (20, 6)],  # the last: only the conversation's end fits
)
def test_a_resize_redraws_the_conversation_and_the_line_for_the_new_size(reflows, columns, rows):
    terminal = chatting()
    terminal.resize(columns, rows, reflows)
    terminal.input.resized()
    expected = fresh(columns, rows, CONVERSATION, TYPED, len(TYPED) - 5)
    assert terminal.lines() == expected.lines()
    assert terminal.cursor() == expected.cursor()
    terminal.type(b"\r")
    assert terminal.sent == [TYPED.encode()]


@RESIZES
@pytest.mark.parametrize(
    ("event", "conversation", "typed", "cursor"),
    [
        (
            lambda terminal: terminal.input.show("<bob> hi"),
            [*CONVERSATION, "<bob> hi"],
            TYPED,
            len(TYPED) - 5,
        ),
        (
            lambda terminal: terminal.type(b"x"),
            CONVERSATION,
            TYPED[:-5] + "x" + TYPED[-5:],
            len(TYPED) - 4,
        ),
        (lambda terminal: terminal.type(b"\x1b[C"), CONVERSATION, TYPED, len(TYPED) - 4),
    ],
    ids=["message", "typed", "moved"],
)
def test_the_first_redraw_after_a_resize_leaves_no_stale_pieces(
    reflows, event, conversation, typed, cursor
):
    # Before the resize is announced, or if it never is.
    terminal = chatting()
    terminal.resize(25, 12, reflows)
    event(terminal)
    expected = fresh(25, 12, conversation, typed, cursor)
    assert terminal.lines() == expected.lines()
    assert terminal.cursor() == expected.cursor()


def test_a_resize_leaves_nothing_of_what_the_terminal_made_of_the_screen():
    terminal = chatting()
    terminal.resize(25, 10, reflows=False)
    # Whatever the terminal did with its rows, and wherever it left the cursor:
    terminal.stream.feed(b"\x1b[H" + b"\r\n".join([b"#" * 25] * 10) + b"\x1b[4;7H")
    terminal.input.resized()
    expected = fresh(25, 10, CONVERSATION, TYPED, len(TYPED) - 5)
    assert terminal.lines() == expected.lines()
    assert terminal.cursor() == expected.cursor()


def test_a_resize_shows_the_end_of_a_long_conversation():
    terminal = Terminal(40, 8)
    long_message = "<bob> " + "long " * 20
    for number in range(30):
        terminal.input.show(f"<bob> message {number}")
    terminal.input.show(long_message)
    terminal.type(b"@bob:ok")
    terminal.resize(10, 6, reflows=True)
    terminal.input.resized()
    rows = word_rows(long_message, 10)
    # Five rows above the prompt's: the last five of the long message.
    assert terminal.lines() == [*rows[-5:], "> @bob:ok"]


def test_a_resize_redraws_the_lines_sent_with_their_passwords_hidden():
    terminal = Terminal(40, 6, split=split_password)
    terminal.type(b"#alice secret\r")
    terminal.input.show("* logged in as alice")
    terminal.resize(30, 6, reflows=False)
    terminal.input.resized()
    assert terminal.lines()[:3] == ["> #alice ********", "* logged in as alice", ">"]
    assert "secret" not in "".join(terminal.lines())


def test_ctrl_l_clears_the_conversation_for_good():
    terminal = chatting()
    terminal.type(b"\x0c")
    terminal.resize(25, 12, reflows=True)
    terminal.input.resized()
    assert terminal.lines() == fresh(25, 12, [], TYPED, len(TYPED) - 5).lines()


@RESIZES
def test_ctrl_l_after_a_resize_draws_the_line_alone_at_the_top(reflows):
    terminal = chatting()
    terminal.resize(25, 12, reflows)
    terminal.type(b"\x0c")
    expected = fresh(25, 12, [], TYPED, len(TYPED) - 5)
    assert terminal.lines() == expected.lines()
    assert terminal.cursor() == expected.cursor()


@RESIZES
def test_a_resize_places_wide_characters_by_their_width(reflows):
    conversation = ["<bob> 日本語のメッセージです", "* 😀 ok"]
    typed = "@bob:日本語 " * 5
    terminal = Terminal(40, 10)
    for line in conversation:
        terminal.input.show(line)
    terminal.type(typed.encode())
    # An odd width: a wide character that would straddle the edge goes to the next row.
    terminal.resize(9, 10, reflows)
    terminal.input.resized()
    assert terminal.lines() == [
        "です",  # the end of the first message: '<bob> 日', '本語のメ', 'ッセージ', 'です'
        "* 😀 ok",
        "> @bob:日",
        "本語 @bob",
        ":日本語 @",
        "bob:日本",
        "語 @bob:",
        "日本語 @b",
        "ob:日本語",
        "",  # the last space
    ]
    assert terminal.cursor() == (9, 1)


def test_a_tab_from_the_server_reaches_its_stop_and_the_rows_break_between_words():
    message = "<bob>\tcolumns\tin\ttext\tthat\twraps"
    terminal = Terminal(40, 6)
    terminal.input.show(message)
    assert terminal.lines()[:2] == ["<bob>   columns in      text    that", "wraps"]
    terminal.resize(16, 6, reflows=False)
    terminal.input.resized()
    assert terminal.lines() == ["<bob>   columns", "in      text", "that    wraps", ">", "", ""]


@pytest.mark.parametrize("columns", [40, 50, 80, 100, 101])
def test_a_long_message_is_cut_between_words(columns):
    message = f"! {format_error(BadPassword(8, 1024))}"
    terminal = Terminal(columns, 8)
    terminal.input.show(message)
    shown = terminal.lines()
    assert shown[: shown.index(">")] == word_rows(message, columns)
    assert not any(row.startswith(" ") for row in shown), shown


@pytest.mark.parametrize(
    ("message", "rows"),
    [
        ("<bob> " + "x" * 25, ["<bob> xxxx", "xxxxxxxxxx", "xxxxxxxxxx", "x"]),  # a long word: cut
        ("<bob> abcd efghij", ["<bob> abcd", "efghij"]),  # a row filled exactly
        ("<bob> ab      cdefghij", ["<bob> ab", "cdefghij"]),  # the blanks at a break go
        ("  indented text", ["  indented", "text"]),  # but not those that begin the message
        ("<bob> 日本語 日本語", ["<bob>", "日本語", "日本語"]),  # wide words, by their width
        ("<bob> 日本語のメッセージ", ["<bob> 日本", "語のメッセ", "ージ"]),  # one wider than a row
        ("", [""]),
    ],
)
def test_rows_of_a_message(message, rows):
    terminal = Terminal(10, 8)
    terminal.input.show(message)
    assert terminal.lines()[: len(rows) + 1] == [*rows, ">"]


TALL = "".join(chr(ord("a") + number % 26) for number in range(100))
TALL_ROWS = [("> " + TALL)[start : start + 10] for start in range(0, 102, 10)]  # 11 rows


def test_a_line_taller_than_the_screen_shows_the_rows_around_the_cursor():
    terminal = Terminal(columns=10, rows=6)
    terminal.type(TALL.encode())
    # Five rows, the screen's less one; a cut mark where the line goes on.
    assert terminal.lines() == ["…" + TALL_ROWS[6][1:], *TALL_ROWS[7:], ""]
    assert terminal.cursor() == (4, 2)
    terminal.type(b"\x1b[H")
    assert terminal.lines() == [*TALL_ROWS[:4], TALL_ROWS[4][:9] + "…", ""]
    assert terminal.cursor() == (0, 2)
    terminal.type(b"\r")
    assert terminal.sent == [TALL.encode()]


def test_moving_in_a_tall_line_scrolls_its_rows_only_at_the_edges():
    terminal = Terminal(columns=10, rows=6)
    terminal.type(TALL.encode())
    bottom = terminal.lines()
    terminal.type(b"\x1b[D" * 30)  # three rows up: the second row shown
    assert terminal.lines() == bottom
    assert terminal.cursor() == (1, 2)
    terminal.type(b"\x1b[D" * 10)  # one more: the rows move down by one
    assert terminal.lines() == [
        "…" + TALL_ROWS[5][1:],
        *TALL_ROWS[6:9],
        TALL_ROWS[9][:9] + "…",
        "",
    ]
    assert terminal.cursor() == (1, 2)
    terminal.type(b"!\r")
    assert terminal.sent == [(TALL[:60] + "!" + TALL[60:]).encode()]


def test_a_message_leaves_no_copy_of_a_line_taller_than_the_screen():
    terminal = Terminal(columns=10, rows=6)
    terminal.type(TALL.encode())
    shown = terminal.lines()[:5]
    terminal.input.show("<bob> hi")
    assert terminal.scrollback() + terminal.lines() == ["<bob> hi", *shown]


def test_ctrl_u_erases_a_line_taller_than_the_screen():
    terminal = Terminal(columns=10, rows=6)
    terminal.type(TALL.encode() + b"\x15")
    assert terminal.scrollback() + terminal.lines() == [">", "", "", "", "", ""]


def test_a_tall_line_of_wide_characters_is_cut_between_characters():
    terminal = Terminal(columns=9, rows=4)
    terminal.type(("日本語日" * 6).encode())
    assert terminal.lines() == ["… 日本語", "日日本語", "日", ""]
    assert terminal.cursor() == (2, 2)
    terminal.type(b"\x01")
    assert terminal.lines() == ["> 日本語", "日日本語", "日日本語…", ""]
    assert terminal.cursor() == (0, 2)


@RESIZES
def test_a_resize_can_make_the_line_taller_than_the_screen(reflows):
    terminal = Terminal(columns=40, rows=12)
    terminal.type(TALL.encode())
    terminal.resize(10, 6, reflows)
    terminal.input.resized()
    assert terminal.lines() == ["…" + TALL_ROWS[6][1:], *TALL_ROWS[7:], ""]
    assert terminal.cursor() == (4, 2)


def test_the_input_area_is_erased_row_by_row_never_cleared_from_the_top_corner():
    """Erasing to the end of the display from the top left is a clear: tmux keeps it."""
    terminal = Terminal(columns=10)
    terminal.type(b"\x0c" + b"a draft longer than a row")
    terminal.lines()
    terminal.input.show("<bob> hi")
    terminal.type(b"\x15")
    written = terminal.output.value()
    assert b"\x1b[J" not in written and b"\x1b[0J" not in written
    assert terminal.lines()[:2] == ["<bob> hi", ">"]
