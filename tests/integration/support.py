"""
Helpers for the integration tests: the real C{twistd chatroute} server, raw
loopback connections to it, and real C{chatroute-client} processes.

Every wait here has a deadline: reads go through L{LineReader}, which waits
with C{selectors}, and the server's start is a bounded poll of its log.
Failures show what had been received so far.
"""

import contextlib
import errno
import os
import re
import selectors
import signal
import socket
import ssl
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

# Generous, because a loaded machine is slow; a passing run never waits this long.
READ_TIMEOUT = 10.0
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
# How often the server's log file is looked at while waiting for it to start.
_LOG_POLL_INTERVAL = 0.02

_BIN = Path(sys.executable).parent
_STARTED = re.compile(r"ChatServerFactory starting on (\d+)")
# A TLS listener's factory is wrapped, and logs itself so; the plain pattern misses it.
TLS_STARTED = re.compile(r"ChatServerFactory \(TLS\) starting on (\d+)")
# A --listen-web listener: the chat page and its WebSocket.
WEB_STARTED = re.compile(r"ChatWebSite starting on (\d+)")
# A --listen-irc listener.
IRC_STARTED = re.compile(r"IRCServerFactory starting on (\d+)")
# A --listen-metrics listener.
METRICS_STARTED = re.compile(r"MetricsSite starting on (\d+)")


def client_command() -> list[str]:
    """The command that runs the terminal client: its script, or C{python -m}."""
    script = _BIN / "chatroute-client"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "chatroute.client"]


def subprocess_environment() -> dict[str, str]:
    """The environment for server and client processes: unbuffered output, a UTF-8 locale."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.setdefault("LANG", "C.UTF-8")
    env.pop("COLUMNS", None)
    env.pop("LINES", None)
    return env


def make_certificate(key: Path, cert: Path, *options: str) -> None:
    """
    Write a key and a self-signed certificate to C{key} and C{cert} with
    C{chatroute-makecert} (its module, run as the command runs it), given
    C{options} too (C{--host localhost}, say).
    """
    subprocess.run(
        [sys.executable, "-m", "chatroute.certs", "--key", str(key), "--cert", str(cert), *options],
        check=True,
        capture_output=True,
        timeout=READ_TIMEOUT,
        env=subprocess_environment(),
    )


class LineReader:
    """
    Lines from a socket, pipe or pseudo-terminal, read with a deadline.

    Bytes read past the end of a line are kept for the next call. Every line
    returned is also kept in L{received}, so a failure can show the whole
    conversation.

    @ivar received: the lines returned so far, without their endings.
    @ivar eof: True once the other end has closed.
    """

    def __init__(
        self,
        name: str,
        fd: int,
        read: Callable[[int], bytes],
        ending: bytes = b"\n",
        pending: Callable[[], int] = lambda: 0,
    ) -> None:
        """
        @param name: what to call this stream in failure messages.
        @param fd: the descriptor to wait on.
        @param read: reads at most the given number of bytes; called only when
            C{fd} is readable.
        @param ending: what every line must end with (C{b"\\r\\n"} for the
            server, C{b"\\n"} for the client's output).
        @param pending: how many bytes C{read} has at hand without C{fd}
            being readable (a TLS socket's decrypted bytes).
        """
        self.name = name
        self.received: list[str] = []
        self.eof = False
        self._fd = fd
        self._read = read
        self._ending = ending
        self._pending = pending
        self._buffer = b""

    def describe(self) -> str:
        """What has been received so far, for failure messages."""
        lines = "\n".join(f"    {line!r}" for line in self.received) or "    (nothing)"
        state = "closed" if self.eof else "open"
        return f"{self.name} ({state}) received:\n{lines}\n  unfinished: {self._buffer!r}"

    def _fill(self, deadline: float) -> bool:
        """Read once more before C{deadline}; False if nothing came in time."""
        remaining = deadline - time.monotonic()
        if remaining <= 0 or self.eof:
            return False
        if not self._pending():
            with selectors.DefaultSelector() as selector:
                selector.register(self._fd, selectors.EVENT_READ)
                if not selector.select(remaining):
                    return False
        try:
            data = self._read(65536)
        except OSError as error:
            # A pseudo-terminal whose other side is closed reads as EIO on Linux.
            if error.errno not in (errno.EIO, errno.ECONNRESET):
                raise
            data = b""
        if not data:
            self.eof = True
            return False
        self._buffer += data
        return True

    def read_line(self, timeout: float = READ_TIMEOUT) -> str:
        """The next line, without its ending; fail if none comes within C{timeout}."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            if not self._fill(deadline):
                why = "closed" if self.eof else f"sent no line within {timeout} s"
                pytest.fail(f"{self.name} {why}\n{self.describe()}")
        raw, self._buffer = self._buffer.split(b"\n", 1)
        raw += b"\n"
        line = raw.decode(errors="replace").removesuffix("\n").removesuffix("\r")
        self.received.append(line)
        if not raw.endswith(self._ending):
            pytest.fail(f"{self.name}: line does not end in {self._ending!r}\n{self.describe()}")
        return line

    def expect(self, expected: str, timeout: float = READ_TIMEOUT) -> None:
        """Fail unless the next line is exactly C{expected}."""
        line = self.read_line(timeout)
        if line != expected:
            pytest.fail(f"{self.name}: expected {expected!r}, got {line!r}\n{self.describe()}")

    def expect_match(self, pattern: str, timeout: float = READ_TIMEOUT) -> re.Match[str]:
        """Fail unless the next line matches the regular expression C{pattern} in full."""
        line = self.read_line(timeout)
        match = re.fullmatch(pattern, line)
        if match is None:
            pytest.fail(f"{self.name}: expected /{pattern}/, got {line!r}\n{self.describe()}")
        return match

    def expect_eof(self, timeout: float = READ_TIMEOUT) -> None:
        """Fail unless the other end closes, with nothing more sent, within C{timeout}."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            if not self._fill(deadline) and not self.eof:
                pytest.fail(f"{self.name} did not close within {timeout} s\n{self.describe()}")
        if self._buffer:
            pytest.fail(f"{self.name} closed after a partial line\n{self.describe()}")

    def read_until_eof(self, timeout: float = READ_TIMEOUT) -> list[str]:
        """Every remaining line, up to the other end closing within C{timeout}."""
        deadline = time.monotonic() + timeout
        lines: list[str] = []
        while True:
            while b"\n" in self._buffer:
                lines.append(self.read_line())
            if self.eof:
                break
            if not self._fill(deadline) and not self.eof:
                pytest.fail(f"{self.name} did not close within {timeout} s\n{self.describe()}")
        if self._buffer:
            pytest.fail(f"{self.name} closed after a partial line\n{self.describe()}")
        return lines


class ChatConnection(LineReader):
    """A raw loopback connection to the server, like C{nc} or C{telnet}."""

    def __init__(
        self,
        port: int,
        name: str,
        newline: str = "\n",
        tls: ssl.SSLContext | None = None,
        server_hostname: str = "localhost",
    ) -> None:
        """
        Connect and read the greeting.

        @param newline: what L{send} ends lines with: C{"\\n"} like netcat,
            C{"\\r\\n"} like telnet.
        @param tls: talk TLS with these settings, like C{openssl s_client};
            the server's certificate must be valid for C{server_hostname}.
        """
        sock = socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT)
        if tls is None:
            self.sock = sock
            super().__init__(name, sock.fileno(), sock.recv, ending=b"\r\n")
        else:
            self.sock = tls.wrap_socket(sock, server_hostname=server_hostname)
            super().__init__(
                name, self.sock.fileno(), self.sock.recv, ending=b"\r\n", pending=self.sock.pending
            )
        self.newline = newline
        self.nick = ""
        host, local_port = self.sock.getsockname()[:2]
        self.expect(f"* connected from {host}:{local_port} — register with #yourname")

    def send(self, line: str) -> None:
        """Send one line, with this connection's line ending."""
        self.send_bytes((line + self.newline).encode())

    def send_bytes(self, data: bytes) -> None:
        """Send bytes as they are."""
        self.sock.sendall(data)

    def register(self, nick: str) -> None:
        """Register C{nick} and wait for the server to confirm it."""
        self.send(f"#{nick}")
        self.expect(f"* registered as {nick}")
        self.nick = nick

    def join(self, room: str, *members: "ChatConnection", operator: str | None = "") -> None:
        """
        Join C{room}, whose other members are C{members}, and check what everyone is told.

        Everyone, this connection too, hears of the join; this connection then
        gets the member list, in which C{operator} is the operator: by
        default the first of C{members} (who created the room), or this
        connection if it is the first; None for a room without one.
        """
        self.send(f"/join {room}")
        for member in (*members, self):
            member.expect(f"* {self.nick} joined {room}")
        if operator == "":
            operator = (members[0] if members else self).nick
        nicks = sorted((member.nick for member in (*members, self)), key=str.lower)
        shown = [f"@{nick}" if nick == operator else nick for nick in nicks]
        self.expect(f"* {room} ({len(nicks)}): {', '.join(shown)}")

    def sync(self, online: list[str]) -> None:
        """
        Ask C{/who} and expect exactly C{online}, sorted.

        As the server answers in order, this also proves that nothing else was
        sent to this connection before the answer.
        """
        self.send("/who")
        self.expect(f"* online ({len(online)}): {', '.join(sorted(online, key=str.lower))}")

    def close(self, reset: bool = False) -> None:
        """Close the socket; with C{reset}, abort it with a TCP RST instead of a FIN."""
        if reset:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


class IRCConnection(LineReader):
    """A raw loopback IRC connection, as a minimal IRC client."""

    def __init__(self, port: int, name: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT)
        super().__init__(name, self.sock.fileno(), self.sock.recv, ending=b"\r\n")

    def send(self, line: str) -> None:
        self.sock.sendall(f"{line}\r\n".encode())

    def expect_command(self, command: str) -> str:
        """Skip lines up to the first with C{command} (or numeric), and return it."""
        while True:
            line = self.read_line()
            words = line.split(" ")
            if (words[1] if line.startswith(":") else words[0]) == command:
                return line

    def close(self) -> None:
        self.sock.close()


STORED_FOR = "* {nick} is offline; message stored for delivery at login"
"""The reply to a direct message kept for an offline account (StoredForLater)."""

_KEPT = re.compile(r"\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\] <[^>]+> (.*)")


def make_account(port: int, nick: str, password: str = "secret123") -> None:
    """Register C{nick} as an account, then leave, so that it is offline."""
    connection = ChatConnection(port, nick)
    connection.register(nick)
    connection.send(f"/register {password}")
    connection.expect(f"* {nick} is now a registered account; log in with #{nick} <password>")
    connection.close()


def log_in(port: int, nick: str, password: str = "secret123") -> tuple[ChatConnection, list[str]]:
    """Log in to C{nick}; return the connection and the texts of the messages kept for it."""
    connection = ChatConnection(port, nick)
    connection.send(f"#{nick} {password}")
    match = connection.expect_match(
        rf"\* logged in as {nick}(?:; (\d+) waiting messages? follows?)?"
    )
    kept = []
    for _ in range(int(match.group(1) or 0)):
        line = connection.read_line()
        found = _KEPT.fullmatch(line)
        assert found, line
        kept.append(found.group(1))
    return connection, kept


class ServerProcess:
    """A running C{twistd --nodaemon chatroute} on an ephemeral loopback port."""

    def __init__(
        self,
        directory: Path,
        *options: str,
        log_name: str = "twistd.log",
        port: int = 0,
    ) -> None:
        """
        Start the server in C{directory} and wait until it listens.

        @param options: more options of C{twistd chatroute}.
        @param port: the port to listen on; by default one the system chooses.
        """
        self.log_path = directory / log_name
        command = [
            str(_BIN / "twistd"),
            "--nodaemon",
            "--pidfile=",
            "chatroute",
            "--listen",
            f"tcp:{port}:interface=127.0.0.1",
            *options,
        ]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command,
                cwd=directory,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=subprocess_environment(),
            )
        self.port = self._wait_for_port()

    def log(self) -> str:
        """Everything the server has logged so far."""
        return self.log_path.read_text(errors="replace")

    def _wait_for_port(self) -> int:
        return int(self.wait_for_log(_STARTED)[0].group(1))

    def wait_for_log(self, pattern: re.Pattern[str], count: int = 1) -> list[re.Match[str]]:
        """
        Wait until the log has C{count} lines matching C{pattern}, such as
        L{TLS_STARTED} once for each TLS listener, in the order listened on.

        @return: the first C{count} matches, in order.
        """
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            matches = list(pattern.finditer(self.log()))
            if len(matches) >= count:
                return matches[:count]
            if self.process.poll() is not None:
                pytest.fail(
                    f"twistd exited with {self.process.returncode} before listening; "
                    f"its log:\n{self.log()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(
                    f"twistd did not listen within {START_TIMEOUT} s; its log:\n{self.log()}"
                )
            time.sleep(_LOG_POLL_INTERVAL)

    def kill(self) -> None:
        """End the server at once with SIGKILL, as a crash would."""
        self.process.kill()
        self.process.wait(STOP_TIMEOUT)

    def stop(self) -> int:
        """
        Stop the server: SIGTERM, then SIGKILL if it has not exited in time.

        @return: its exit status (negative: the signal that ended it).
        """
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT)
                pytest.fail(f"twistd ignored SIGTERM for {STOP_TIMEOUT} s; its log:\n{self.log()}")
        return self.process.returncode


class ClientProcess:
    """
    A running C{chatroute-client} with piped standard input and output.

    @ivar stdout: its standard output, line by line.
    """

    def __init__(self, args: list[str], directory: Path, name: str) -> None:
        self.name = name
        self.stderr_path = directory / f"{name}.stderr"
        with self.stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen(
                [*client_command(), *args],
                cwd=directory,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=subprocess_environment(),
            )
        assert self.process.stdout is not None
        self.stdout = LineReader(f"{name} stdout", self.process.stdout.fileno(), self._read)

    def _read(self, size: int) -> bytes:
        assert self.process.stdout is not None
        return os.read(self.process.stdout.fileno(), size)

    def send(self, text: str) -> None:
        """Write C{text} to the client's standard input."""
        assert self.process.stdin is not None
        self.process.stdin.write(text.encode())
        self.process.stdin.flush()

    def close_input(self) -> None:
        """End the client's standard input."""
        assert self.process.stdin is not None
        self.process.stdin.close()

    def stderr(self) -> str:
        """What the client has written to standard error."""
        return self.stderr_path.read_text(errors="replace")

    def wait(self, timeout: float = READ_TIMEOUT) -> int:
        """Its exit status; fail if it is still running after C{timeout}."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"{self.name} still running after {timeout} s\n{self.stdout.describe()}\n"
                f"stderr: {self.stderr()!r}"
            )

    def kill(self) -> None:
        """Make sure the process is gone."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT)
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None and not pipe.closed:
                # Closing stdin flushes it, which fails if the client is gone.
                with contextlib.suppress(BrokenPipeError):
                    pipe.close()


def eventually_who(connection: ChatConnection, online: list[str], within: float) -> list[str]:
    """
    Ask C{/who} until it is exactly C{online}, for at most C{within} seconds.

    @return: the other lines received meanwhile.
    """
    expected = f"* online ({len(online)}): {', '.join(sorted(online, key=str.lower))}"
    deadline = time.monotonic() + within
    others = []
    while True:
        connection.send("/who")
        line = connection.read_line()
        while not line.startswith("* online ("):
            others.append(line)
            line = connection.read_line()
        if line == expected:
            return others
        if time.monotonic() > deadline:
            pytest.fail(f"/who still {line!r}, not {expected!r}\n{connection.describe()}")
        time.sleep(_LOG_POLL_INTERVAL)
