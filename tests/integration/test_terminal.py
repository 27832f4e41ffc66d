"""
The real client in a pseudo-terminal, its output rendered by C{pyte} as a
terminal would show it, driven by keystrokes.
"""

import fcntl
import os
import re
import selectors
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pyte
import pytest

from tests.emulation import reflow

from .support import (
    READ_TIMEOUT,
    ChatConnection,
    ServerProcess,
    client_command,
    subprocess_environment,
)

pytestmark = pytest.mark.integration

COLUMNS, ROWS = 80, 24


class TerminalSession:
    """
    A process whose standard input, output and error are a pseudo-terminal.

    @ivar screen: what the terminal shows, fed from the process's output.
    @ivar mode: the terminal's attributes before the process started.
    """

    def __init__(self, command: list[str], directory: Path) -> None:
        self._master, self._slave = os.openpty()
        self._set_size(COLUMNS, ROWS)
        self.mode = termios.tcgetattr(self._slave)
        self.screen = pyte.Screen(COLUMNS, ROWS)
        self._stream = pyte.ByteStream(self.screen)
        self.output = b""
        env = subprocess_environment()
        env["TERM"] = "xterm"
        self.process = subprocess.Popen(
            command,
            cwd=directory,
            stdin=self._slave,
            stdout=self._slave,
            stderr=self._slave,
            env=env,
            start_new_session=True,
        )

    def _set_size(self, columns: int, rows: int) -> None:
        fcntl.ioctl(self._slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))

    def type(self, keys: bytes) -> None:
        """Press C{keys}."""
        os.write(self._master, keys)

    def resize(self, columns: int, rows: int, reflows: bool) -> None:
        """
        Resize the window: the terminal rewraps its rows if it C{reflows}, else
        cuts them, then tells the process (which has no controlling terminal
        for the kernel to signal).
        """
        self._set_size(columns, rows)
        if reflows:
            reflow(self.screen, columns, rows)
        else:
            self.screen.resize(rows, columns)
        self.process.send_signal(signal.SIGWINCH)

    @property
    def cursor_line(self) -> str:
        """The text of the line the cursor is on."""
        return self.screen.display[self.screen.cursor.y].rstrip()

    def line_above(self, count: int = 1) -> str:
        """The text of the line C{count} above the cursor's."""
        return self.screen.display[self.screen.cursor.y - count].rstrip()

    def describe(self) -> str:
        """The screen and cursor, for failure messages."""
        rows = "\n".join(
            f"  {row:2}|{line.rstrip()}" for row, line in enumerate(self.screen.display)
        )
        cursor = self.screen.cursor
        return (
            f"screen (cursor at row {cursor.y}, column {cursor.x}):\n{rows}\nraw: {self.output!r}"
        )

    def _pump(self, deadline: float) -> None:
        """Feed what the process writes before C{deadline}, or nothing if it writes nothing."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        with selectors.DefaultSelector() as selector:
            selector.register(self._master, selectors.EVENT_READ)
            if not selector.select(remaining):
                return
        data = os.read(self._master, 65536)
        self.output += data
        self._stream.feed(data)

    def wait_for(
        self, condition: Callable[[], bool], what: str, timeout: float = READ_TIMEOUT
    ) -> None:
        """Read the terminal until C{condition()} holds; fail after C{timeout}."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() >= deadline:
                pytest.fail(
                    f"the terminal never showed {what} within {timeout} s\n{self.describe()}"
                )
            self._pump(deadline)

    def wait_for_exit(self, timeout: float = READ_TIMEOUT) -> int:
        """Keep reading the terminal until the process exits; its exit status."""
        deadline = time.monotonic() + timeout
        while self.process.poll() is None:
            if time.monotonic() >= deadline:
                pytest.fail(f"the client did not exit within {timeout} s\n{self.describe()}")
            # The process may exit without writing more: wake up now and then to see.
            self._pump(min(deadline, time.monotonic() + 0.05))
        # Take what it wrote last; the slave stays open here, so this read cannot block.
        with selectors.DefaultSelector() as selector:
            selector.register(self._master, selectors.EVENT_READ)
            while selector.select(0):
                data = os.read(self._master, 65536)
                self.output += data
                self._stream.feed(data)
        return self.process.returncode

    def current_mode(self) -> list[object]:
        """The terminal's attributes now."""
        return termios.tcgetattr(self._slave)

    def close(self) -> None:
        """Kill the process if it still runs and close the terminal."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(READ_TIMEOUT)
        os.close(self._master)
        os.close(self._slave)


@pytest.fixture
def terminal_client(server, tmp_path) -> Iterator[Callable[[str], TerminalSession]]:
    """Start C{chatroute-client --nick NAME ARGS} in a terminal: C{terminal_client(name, *args)}."""
    sessions: list[TerminalSession] = []

    def start(nick: str, *args: str) -> TerminalSession:
        command = [
            *client_command(),
            *("--host", "127.0.0.1", "--port", str(server.port), "--nick", nick, *args),
        ]
        session = TerminalSession(command, tmp_path)
        sessions.append(session)
        session.wait_for(
            lambda: (
                session.line_above() == f"* registered as {nick}" and session.cursor_line == ">"
            ),
            "the registration and a prompt",
        )
        return session

    yield start
    for session in sessions:
        session.close()


def test_incoming_message_keeps_the_half_typed_line(connect, terminal_client):
    dave = connect("dave")
    dave.register("dave")
    carol = terminal_client("carol")
    typed = "> @dave:half a li"

    carol.type(b"@dave:half a li")
    carol.wait_for(lambda: carol.cursor_line == typed, "the typed text")
    dave.send("@carol:hello carol")
    carol.wait_for(lambda: carol.line_above() == "<dave> hello carol", "the message")

    assert carol.cursor_line == typed, carol.describe()
    assert carol.screen.cursor.x == len(typed), carol.describe()
    assert carol.line_above(2) == "* registered as carol", carol.describe()
    shown = [line.rstrip() for line in carol.screen.display if "half" in line]
    assert shown == [typed], carol.describe()

    carol.type(b"\r")
    dave.expect("<carol> half a li")
    carol.wait_for(lambda: carol.cursor_line == ">", "a fresh prompt")
    carol.type(b"\x03")
    assert carol.wait_for_exit() == 0, carol.describe()


def test_incoming_message_keeps_a_wrapped_half_typed_line_whole(connect, terminal_client):
    dave = connect("dave")
    dave.register("dave")
    carol = terminal_client("carol")
    typed = "> @dave:" + "w" * 100  # wraps onto a second row

    carol.type(typed[2:].encode())
    carol.wait_for(lambda: carol.cursor_line == typed[COLUMNS:], "the typed text")
    dave.send("@carol:hello carol")
    carol.wait_for(
        lambda: any("<dave> hello carol" in line for line in carol.screen.display), "the message"
    )

    shown = [line.rstrip() for line in carol.screen.display if line.strip()]
    assert shown[1:] == [
        "* registered as carol",
        "<dave> hello carol",
        typed[:COLUMNS],
        typed[COLUMNS:],
    ], carol.describe()


def test_wide_characters_wrap_and_stay_whole(connect, terminal_client):
    dave = connect("dave")
    dave.register("dave")
    carol = terminal_client("carol")
    # "> @dave:x" and 35 of them fill 79 columns: the 36th goes to the next row.
    first, second = "> @dave:x" + "日" * 35, "日" * 5

    carol.type(("@dave:x" + "日" * 40).encode())
    carol.wait_for(
        lambda: carol.cursor_line == second and carol.screen.cursor.x == 10, "the typed text"
    )
    assert carol.line_above() == first, carol.describe()
    dave.send("@carol:hello carol")
    carol.wait_for(lambda: carol.line_above(2) == "<dave> hello carol", "the message")

    shown = [line.rstrip() for line in carol.screen.display if line.strip()]
    assert shown[-3:] == ["<dave> hello carol", first, second], carol.describe()
    assert carol.screen.cursor.x == 10, carol.describe()
    carol.type(b"\r")
    dave.expect("<carol> x" + "日" * 40)


def test_control_keys_edit_the_line(connect, terminal_client):
    dave = connect("dave")
    dave.register("dave")
    carol = terminal_client("carol")

    carol.type("@dave:日本語 typo".encode() + b"\x17\x0b\x0c")  # Ctrl-W, Ctrl-K, Ctrl-L
    carol.wait_for(
        lambda: carol.screen.display[0].rstrip() == "> @dave:日本語" and carol.screen.cursor.y == 0,
        "the line alone at the top",
    )
    assert carol.screen.cursor.x == len("> @dave:") + 7, carol.describe()
    carol.type(b"\x01\x06\x06\x02\x15@\x05ok\r")  # Ctrl-A, F, F, B, U, E
    dave.expect("<carol> 日本語 ok")
    carol.wait_for(lambda: carol.cursor_line == ">", "a fresh prompt")
    assert not any(line.startswith("!") for line in carol.screen.display), carol.describe()


def test_errors_in_a_terminal_session_still_exit_with_0(terminal_client):
    carol = terminal_client("carol")
    carol.type(b"/dance\r")
    carol.wait_for(
        lambda: carol.line_above() == "! unknown command: /dance (try /help)", "the error"
    )

    carol.type(b"\x03")
    assert carol.wait_for_exit() == 0, carol.describe()


def test_ctrl_c_quits_and_restores_the_terminal(terminal_client):
    carol = terminal_client("carol")
    carol.type(b"unsent\x03")

    assert carol.wait_for_exit() == 0, carol.describe()
    assert b"* bye\r" in carol.output, carol.describe()
    assert carol.current_mode() == carol.mode


def test_quitting_leaves_the_conversation_on_screen(terminal_client):
    carol = terminal_client("carol")
    carol.type(b"\x03")

    assert carol.wait_for_exit() == 0, carol.describe()
    shown = [line.rstrip() for line in carol.screen.display]
    assert "* registered as carol" in shown, carol.describe()
    assert "* bye" in shown, carol.describe()
    # Whatever the fix, the insert mode the line editor turned on must be off again.
    assert pyte.modes.IRM not in carol.screen.mode, carol.describe()


@pytest.mark.parametrize("keys", [b"half typed\x03", b"\x04", b"/quit\r", b"half\x01exit\x0b\r"])
def test_quitting_erases_the_input_area(terminal_client, keys):
    carol = terminal_client("carol")
    carol.type(keys)

    assert carol.wait_for_exit() == 0, carol.describe()
    shown = [line.rstrip() for line in carol.screen.display]
    bye = shown.index("* bye")
    assert not any(shown[bye + 1 :]), carol.describe()
    assert (carol.screen.cursor.y, carol.screen.cursor.x) == (bye + 1, 0), carol.describe()
    assert "half" not in "".join(shown), carol.describe()


def test_a_paste_longer_than_the_flood_burst_arrives_whole(connect, terminal_client):
    dave = connect("dave")
    dave.register("dave")
    carol = terminal_client("carol")

    carol.type(b"".join(b"@dave:pasted-%d\r" % number for number in range(40)))
    for number in range(40):
        dave.expect(f"<carol> pasted-{number}")
    carol.wait_for(lambda: carol.cursor_line == ">", "a fresh prompt")
    assert not any(line.startswith("!") for line in carol.screen.display), carol.describe()


def restarted(server: ServerProcess, tmp_path: Path) -> ServerProcess:
    """Stop C{server} and start another on its port, with its database."""
    server.stop()
    return ServerProcess(tmp_path / "server", log_name="again.log", port=server.port)


def test_reconnects_keeping_the_typed_line_name_and_rooms(
    server, connect, terminal_client, tmp_path
):
    carol = terminal_client("carol")
    carol.type(b"/join #lobby\r")
    carol.wait_for(lambda: carol.line_above() == "* #lobby (1): @carol", "the join")
    typed = "> @#lobby:after the restart"
    carol.type(typed[2:].encode())

    again = restarted(server, tmp_path)
    try:
        carol.wait_for(
            lambda: carol.line_above().startswith(
                "-- the server is shutting down; reconnecting in "
            ),
            "the reconnection notice",
        )
        assert carol.line_above().endswith(" s (Ctrl-C quits)"), carol.describe()
        assert carol.line_above(2) == "* the server is shutting down; closing", carol.describe()
        assert carol.cursor_line == typed, carol.describe()
        carol.type(b"\x01\x05")  # Home, End: still being edited
        carol.wait_for(
            lambda: carol.line_above() == "* #lobby (1): @carol", "the room joined again", 30
        )
        assert carol.line_above(3) == "* registered as carol", carol.describe()
        assert carol.cursor_line == typed, carol.describe()

        dave = ChatConnection(again.port, "dave")
        dave.register("dave")
        dave.send("/join #lobby")
        dave.expect("* dave joined #lobby")
        dave.expect("* #lobby (2): @carol, dave")
        carol.type(b"\r")
        dave.expect("#lobby <carol> after the restart")
        dave.close()
    finally:
        again.stop()


def test_reconnecting_asks_for_the_password_of_an_account(server, terminal_client, tmp_path):
    carol = terminal_client("carol")
    carol.type(b"/register correct horse battery\r")
    carol.wait_for(
        lambda: carol.line_above().startswith("* carol is now a registered account"), "the account"
    )

    again = restarted(server, tmp_path)
    try:
        carol.wait_for(
            lambda: carol.cursor_line == "password for carol:", "the password prompt", 30
        )
        carol.type(b"correct horse battery\r")
        carol.wait_for(lambda: carol.line_above() == "* logged in as carol", "the login")
        assert carol.cursor_line == ">", carol.describe()
        assert "horse" not in "".join(carol.screen.display), carol.describe()
    finally:
        again.stop()


def test_without_reconnecting_a_lost_connection_ends_the_client(server, terminal_client):
    carol = terminal_client("carol", "--no-reconnect")
    server.stop()

    assert carol.wait_for_exit() == 1, carol.describe()
    assert "the server closed the connection: the server is shutting down" in "".join(
        carol.screen.display
    ), carol.describe()


def _rows(text: str, columns: int) -> list[str]:
    """C{text} (one column a character) as a terminal C{columns} wide wraps it."""
    return [text[start : start + columns] for start in range(0, len(text), columns)]


@pytest.mark.parametrize("reflows", [True, False], ids=["reflowing", "cutting"])
def test_a_resize_mid_line_leaves_no_stale_pieces(connect, terminal_client, reflows):
    dave = connect("dave")
    dave.register("dave")
    carol = terminal_client("carol")
    typed = "> @dave:" + "".join(chr(ord("a") + number % 26) for number in range(150))
    carol.type(typed[2:].encode())
    carol.wait_for(lambda: carol.cursor_line == typed[COLUMNS:], "the typed text")
    conversation = [line.rstrip() for line in carol.screen.display[:2]]
    assert conversation[1] == "* registered as carol", carol.describe()

    carol.resize(40, 12, reflows)
    rows = [*_rows(conversation[0], 40), conversation[1], *_rows(typed, 40)]
    expected = rows + [""] * (12 - len(rows))
    carol.wait_for(
        lambda: [line.rstrip() for line in carol.screen.display] == expected,
        "the conversation and the whole line, rewrapped",
    )
    assert (carol.screen.cursor.y, carol.screen.cursor.x) == (len(rows) - 1, 38), carol.describe()

    dave.send("@carol:hello carol")
    rows[-4:-4] = ["<dave> hello carol"]
    carol.wait_for(
        lambda: [line.rstrip() for line in carol.screen.display] == rows + [""] * (12 - len(rows)),
        "the message above the line",
    )
    carol.type(b"\r")
    dave.expect("<carol> " + typed[len("> @dave:") :])


def test_a_wrong_password_after_reconnecting_asks_again_and_rooms_wait(
    server, terminal_client, tmp_path
):
    carol = terminal_client("carol")
    carol.type(b"/register correct horse battery\r/join #lobby\r")
    carol.wait_for(lambda: carol.line_above() == "* #lobby (1): @carol", "the join")
    carol.type(b"draft line")

    again = restarted(server, tmp_path)
    try:
        carol.wait_for(lambda: carol.cursor_line == "password for carol:", "the prompt", 30)
        carol.type(b"not the password\r")
        carol.wait_for(lambda: carol.line_above() == "! wrong nickname or password", "the refusal")
        carol.wait_for(lambda: carol.cursor_line == "password for carol:", "the prompt again")
        assert not any("register first" in line for line in carol.screen.display), carol.describe()
        carol.type(b"correct horse battery\r")
        carol.wait_for(lambda: carol.line_above() == "* #lobby (1): @carol", "the rooms again")
        assert carol.cursor_line == "> draft line", carol.describe()
    finally:
        again.stop()


@pytest.mark.server_options("--register-timeout", "1")
def test_a_client_that_never_chose_a_nickname_is_not_taken_back(server, tmp_path):
    command = [*client_command(), "--host", "127.0.0.1", "--port", str(server.port)]
    session = TerminalSession(command, tmp_path)
    try:
        assert session.wait_for_exit() == 1, session.describe()
        assert "reconnecting" not in "".join(session.screen.display), session.describe()
    finally:
        session.close()


def test_the_greeting_leaves_out_the_hint_when_the_client_registers_itself(terminal_client):
    carol = terminal_client("carol")
    assert re.fullmatch(r"\* connected from 127\.0\.0\.1:\d+", carol.line_above(2)), (
        carol.describe()
    )


def private_server(directory: Path, port: int = 0, log_name: str = "twistd.log") -> ServerProcess:
    """A server whose password, in the file C{directory}/password, is C{open sesame}."""
    password = directory / "password"
    password.write_text("open sesame\n")
    return ServerProcess(
        directory, "--server-password-file", str(password), log_name=log_name, port=port
    )


def join_then_restart(
    carol: "TerminalSession", server: ServerProcess, directory: Path
) -> ServerProcess:
    """carol joins #lobby, then the server restarts on its port: the new server."""
    carol.type(b"/join #lobby\r")
    carol.wait_for(lambda: carol.line_above() == "* #lobby (1): @carol", "the join")
    server.stop()
    carol.wait_for(
        lambda: carol.line_above().startswith("-- the server is shutting down; reconnecting"),
        "the reconnection notice",
    )
    return private_server(directory, server.port, "again.log")


def test_a_server_password_from_a_file_is_given_on_every_connection(tmp_path):
    directory = tmp_path / "server"
    directory.mkdir()
    server = private_server(directory)
    mine = tmp_path / "mine"
    mine.write_text("open  sesame\n")
    command = [
        *client_command(), "--host", "127.0.0.1", "--port", str(server.port), "--nick", "carol",
        "--server-password-file", str(mine),
    ]  # fmt: skip
    carol = TerminalSession(command, tmp_path)
    again = None
    try:
        carol.wait_for(lambda: carol.line_above() == "* registered as carol", "the registration")
        assert carol.line_above(2) == "* server password accepted", carol.describe()
        assert re.fullmatch(r"\* connected from 127\.0\.0\.1:\d+", carol.line_above(3)), (
            carol.describe()
        )
        again = join_then_restart(carol, server, directory)
        carol.wait_for(
            lambda: carol.line_above() == "* #lobby (1): @carol", "the room joined again", 30
        )
        assert carol.line_above(3) == "* registered as carol", carol.describe()
        assert carol.line_above(4) == "* server password accepted", carol.describe()
        assert "sesame" not in "".join(carol.screen.display), carol.describe()
    finally:
        carol.close()
        server.stop()
        if again is not None:
            again.stop()


def test_the_client_asks_for_a_server_password_and_keeps_it_for_reconnecting(tmp_path):
    directory = tmp_path / "server"
    directory.mkdir()
    server = private_server(directory)
    command = [*client_command(), "--host", "127.0.0.1", "--port", str(server.port), "-n", "carol"]
    carol = TerminalSession(command, tmp_path)
    again = None
    try:
        carol.wait_for(lambda: carol.cursor_line == "server password:", "the password prompt")
        assert re.fullmatch(
            r"\* connected from 127\.0\.0\.1:\d+ — this server has a password", carol.line_above()
        ), carol.describe()
        carol.type(b"open sesame\r")
        carol.wait_for(lambda: carol.line_above() == "* registered as carol", "the registration")
        assert carol.line_above(2) == "* server password accepted", carol.describe()
        assert carol.cursor_line == ">", carol.describe()
        again = join_then_restart(carol, server, directory)
        carol.wait_for(
            lambda: carol.line_above() == "* #lobby (1): @carol", "the room joined again", 30
        )
        assert carol.line_above(4) == "* server password accepted", carol.describe()
        assert "sesame" not in "".join(carol.screen.display), carol.describe()
        assert not any(line.startswith("!") for line in carol.screen.display), carol.describe()
    finally:
        carol.close()
        server.stop()
        if again is not None:
            again.stop()


def test_a_wrong_server_password_typed_is_asked_for_again(tmp_path):
    directory = tmp_path / "server"
    directory.mkdir()
    server = private_server(directory)
    command = [*client_command(), "--host", "127.0.0.1", "--port", str(server.port), "-n", "carol"]
    carol = TerminalSession(command, tmp_path)
    try:
        carol.wait_for(lambda: carol.cursor_line == "server password:", "the password prompt")
        carol.type(b"guess\r")
        carol.wait_for(
            lambda: carol.line_above().startswith("-- wrong server password; reconnecting in "),
            "the reconnection",
        )
        carol.wait_for(lambda: carol.cursor_line == "server password:", "the prompt again")
        carol.type(b"open sesame\r")
        carol.wait_for(lambda: carol.line_above() == "* registered as carol", "the registration")
    finally:
        carol.close()
        server.stop()
