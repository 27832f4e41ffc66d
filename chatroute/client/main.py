"""
The terminal client: C{chatroute-client --host H --port P [--nick NAME] [--tls]}.

Lines typed (or piped) are sent to the server as they are; lines from the
server are shown as they arrive, never waiting for input. On a terminal the
line being typed keeps its own prompt line, with editing keys and history,
while messages scroll above it. Piped input is sent in order; at its end the
client says C{/quit} and waits for the server to close, so everything is
delivered (and every reply shown) before it exits.

On a server with a password, the one in C{--server-password-file} goes first
on every connection; without it, on a terminal, the client asks for it when
the server's greeting says there is one (see L{ClientSession}).

With C{--tls} the connection is encrypted and the server must prove who it
is: its certificate must be signed by an authority the system trusts, or be
in the C{--cafile} given, and must name the C{--host} connected to. Nothing
is sent, and the client exits with a message, if it does not.

Exit status: 0 after a clean quit; 1 if the server cannot be reached (with
TLS: its certificate does not verify) or the connection is lost; 2 for a
usage error; 3, with piped input only, if the server answered any of the
lines sent with an error (a C{! ...} line). On a terminal the user has seen
each error and carried on, so a session there ends with 0.
"""

import os
import random
import re
import signal
import sys
import termios
import tty
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, ClassVar, NoReturn, TypeVar
from typing import Protocol as TypingProtocol

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL
from service_identity import VerificationError
from twisted.internet import error as neterror
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import HostnameEndpoint, connectProtocol, wrapClientTLS
from twisted.internet.interfaces import (
    IHalfCloseableProtocol,
    IHandshakeListener,
    IOpenSSLClientConnectionCreator,
    IReactorFromThreads,
    IReactorTCP,
    IReactorTime,
    IStreamClientEndpoint,
    ITransport,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.ssl import (
    Certificate,
    optionsForClientTLS,
    platformTrust,
    trustRootFromCertificates,
)
from twisted.internet.stdio import StandardIO
from twisted.internet.task import LoopingCall, deferLater, react
from twisted.protocols.basic import LineReceiver
from twisted.python import usage
from twisted.python.failure import Failure
from zope.interface import implementer

from chatroute.client.pacing import Pacer
from chatroute.client.terminal import Keyboard, TerminalScreen
from chatroute.frontends import syntax as lines
from chatroute.frontends.syntax import CONTROL_CHARACTERS
from chatroute.options import CommandOptions, port_number

_QUIT = re.compile(rb"(?:exit|/quit(?:\s+(?P<reason>.*))?)", re.IGNORECASE | re.DOTALL)
"""What the user types to end the session: C{exit}, C{/quit}, or C{/quit REASON}."""
_LONGEST_LINE = 1 << 20


def client_tls(host: str, cafile: str | None) -> IOpenSSLClientConnectionCreator:
    """
    How to set up TLS connections to C{host} that verify the server.

    The server's certificate must be signed by one of the certificates in
    the PEM file C{cafile} (an authority's, or the server's own self-signed
    one), or without C{cafile} by one of the system's certificate
    authorities; and it must be valid for C{host}.

    @raise usage.UsageError: C{cafile} cannot be read or holds no
        certificate, or C{host} is not a valid host name.
    """
    if cafile is None:
        root = platformTrust()
    else:
        try:
            with open(cafile, "rb") as file:
                pem = file.read()
        except OSError as error:
            raise usage.UsageError(f"cannot read --cafile {cafile}: {error.strerror}") from None
        try:
            found = x509.load_pem_x509_certificates(pem)
        except ValueError:
            raise usage.UsageError(f"--cafile {cafile} holds no PEM certificate") from None
        root = trustRootFromCertificates(
            [Certificate.loadPEM(cert.public_bytes(Encoding.PEM)) for cert in found]
        )
    try:
        return optionsForClientTLS(host, root)
    except UnicodeError:
        raise usage.UsageError(f"--host {host!r} is not a valid host name") from None


class ClientOptions(CommandOptions):
    """
    Command-line options of C{chatroute-client}.

    @ivar tls_options: with C{--tls} (or C{--cafile}), how to set up TLS connections
        that verify the server's certificate and host name; else L{None}.
    """

    command = "chatroute-client"
    synopsis = (
        "Usage: chatroute-client [--host HOST] [--port PORT] [--nick NAME] [--tls [--cafile FILE]] "
        "[--server-password-file FILE] [--no-reconnect]"
    )
    longdesc = (
        "Chat on a chatroute server. Lines typed, or piped in, are sent to the server; its "
        "lines are shown as they arrive. Exit status: 0 after a clean quit, 1 if the "
        "connection failed or was lost, 2 for a usage error, 3 (piped input only) if the "
        "server answered any line with an error. With --tls the server's certificate must "
        "be valid for --host and signed by an authority the system trusts, or by one in "
        "--cafile; if it is not, the client exits with 1 before sending anything. On a "
        "server with a password, the client gives the one in --server-password-file on "
        "every connection, before the nickname; without it, on a terminal, it asks for it "
        "(not shown as typed) when the server says it has one."
    )
    optFlags: ClassVar[list[list[str | None]]] = [
        ["tls", None, "Connect with TLS; the server's certificate must verify for --host."],
        [
            "no-reconnect",
            None,
            "On a terminal, exit when the connection is lost instead of reconnecting "
            "(piped input never reconnects).",
        ],
    ]
    optParameters: ClassVar[list[list[Any]]] = [
        ["host", None, "localhost", "Server host name or address."],
        ["port", "p", 12345, "Server TCP port (1-65535).", port_number("port", 1)],
        ["nick", "n", None, "Register this nickname on connect (a leading # is dropped)."],
        [
            "cafile",
            None,
            None,
            "Trust the PEM certificates in this file (a CA's, or the server's self-signed "
            "one) instead of the system's authorities. Implies --tls.",
        ],
        [
            "server-password-file",
            None,
            None,
            "Give the server password in the first line of this file (on a server run with "
            "--server-password-file), first on every connection and reconnection.",
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        self.tls_options: IOpenSSLClientConnectionCreator | None = None
        self.server_password: bytes | None = None

    def postOptions(self) -> None:
        """Take C{--nick #alice} as C{--nick alice}; set up TLS, which C{--cafile} implies."""
        if self["nick"] is not None:
            self["nick"] = self["nick"].removeprefix("#")
            if not self["nick"] or any(c.isspace() for c in self["nick"]):
                raise usage.UsageError("--nick needs one name, without spaces")
        if self["cafile"] is not None:
            self["tls"] = True
        if self["tls"]:
            self.tls_options = client_tls(self["host"], self["cafile"])
        if self["server-password-file"] is not None:
            self.server_password = read_server_password(self["server-password-file"])


def read_server_password(path: str) -> bytes:
    """
    The server password in the first line of the file at C{path}, white
    space at either end dropped, as the server reads its own.

    @raise usage.UsageError: the file cannot be read, or its first line is blank.
    """
    try:
        with open(path, "rb") as file:
            password = file.readline().strip()
    except OSError as error:
        raise usage.UsageError(
            f"--server-password-file: cannot read {path!r}: {error.strerror}"
        ) from None
    if not password:
        raise usage.UsageError(f"--server-password-file: the first line of {path!r} is blank")
    return password


def split_password(line: bytes) -> tuple[bytes, bytes] | None:
    """C{line} cut where its password starts, as (before, password); None if it carries none."""
    parts = lines.split_password(line.decode(errors="replace"))
    if parts is None:
        return None
    before = parts[0].encode()
    return before, line[len(before) :]


def printable(text: str) -> str:
    """C{text} with control characters replaced, so a server cannot drive the terminal."""
    return CONTROL_CHARACTERS.sub("\N{REPLACEMENT CHARACTER}", text)


def _transport(protocol: Protocol) -> ITransport:
    transport = protocol.transport
    assert transport is not None, "used only while connected"
    return transport


KEEPALIVE_INTERVAL = 240.0
"""Seconds of silence after which the client pings, at most (the server's idle timeout is 900)."""

DEFAULT_FLOOD_LIMIT = (10.0, 20)
"""The server's default flood rate and burst, assumed of a server that does not tell its own."""

_LIMITS_ANSWER = re.compile(
    r"\* limits: flood-rate=(?P<rate>[0-9.]+) flood-burst=(?P<burst>[0-9]+) "
    r"max-line-length=[0-9]+ idle-timeout=(?P<idle>[0-9.]+)"
)
_LIMITS_UNKNOWN = "! unknown command: /limits (try /help)"


@implementer(IHandshakeListener)
class ServerConnection(LineReceiver):
    """
    The connection to the chat server.

    @ivar ready: fires once lines can be exchanged: when connected over
        plain TCP, after the handshake (the server's certificate verified)
        over TLS; fails with the reason the connection was lost before that.
    @ivar display: called with each line from the server, as text.
    @ivar finished: fires when the connection closes: with True if the
        user asked to quit and the server said goodbye, else False.
    @ivar heard: whether any line came from the server.
    @ivar closing_reason: why the server said it was closing the connection
        (from a C{* REASON; closing} notice, or a C{! REASON; closing}
        error), if it did.
    @ivar refused: how many lines the server answered with an error (C{! ...}).

    Before L{start} lines are written at once; after it they wait for the
    server's limits (C{/limits}), then go out paced to them (L{Pacer}).
    """

    delimiter = b"\n"
    MAX_LENGTH = _LONGEST_LINE

    def __init__(self, tls: bool = False) -> None:
        """
        @param tls: the connection runs over TLS, so it is L{ready} only
            after the handshake.
        """
        self.ready: Deferred[None] = Deferred()
        self.display: Callable[[str], None] = lambda text: None
        self.finished: Deferred[bool] = Deferred()
        self.refused = 0
        self._quitting = False
        self._quit_line = b"/quit"
        self._tls = tls
        self._keepalive: LoopingCall | None = None
        self._said_bye = False
        self.heard = False
        self.closing_reason: str | None = None
        self._sent_lately = False
        self._pongs_owed = 0
        self._limits_owed = False
        self._pacer: Pacer | None = None

    def connectionMade(self) -> None:
        """Over plain TCP, the connection is ready at once."""
        if not self._tls:
            self.ready.callback(None)

    def handshakeCompleted(self) -> None:
        """The server's certificate verified: the connection is ready."""
        self.ready.callback(None)

    def start(self, clock: IReactorTime) -> None:
        """
        Ask the server for its limits, and from then on pace what is sent
        to them and keep a quiet session alive (L{keep_alive}). The answer
        is not shown.
        """
        self._pacer = Pacer(self._write_line, clock, released=False)
        self._limits_owed = True
        self._write_line(b"/limits")
        self.keep_alive(clock)

    def _take_limits(self, text: str) -> bool:
        """If C{text} answers C{/limits}, pace lines to what it says, and say True."""
        found = _LIMITS_ANSWER.fullmatch(text)
        if found is None and text != _LIMITS_UNKNOWN:
            return False
        self._limits_owed = False
        rate, burst = DEFAULT_FLOOD_LIMIT
        if found is not None:
            rate, burst = float(found["rate"]), int(found["burst"])
            idle = float(found["idle"])
            if idle and self._keepalive is not None:
                self._keepalive.stop()
                self.keep_alive(self._keepalive.clock, min(KEEPALIVE_INTERVAL, idle / 3))
        assert self._pacer is not None, "asked in start()"
        self._pacer.pace(rate, burst)
        return True

    def keep_alive(self, clock: IReactorTime, interval: float = KEEPALIVE_INTERVAL) -> None:
        """
        Send C{/ping} whenever C{interval} seconds pass with nothing sent, so
        that the server's idle timeout does not close a quiet session. The
        C{* pong} answers are not shown.
        """
        self._keepalive = LoopingCall(self._ping_if_quiet)
        self._keepalive.clock = clock
        self._keepalive.start(interval, now=False)

    def _ping_if_quiet(self) -> None:
        if not self._sent_lately:
            self._pongs_owed += 1
            self._send_line(b"/ping")
        self._sent_lately = False

    def _write_line(self, line: bytes) -> None:
        _transport(self).write(line + b"\r\n")

    def _send_line(self, line: bytes) -> None:
        if self._pacer is None:
            self._write_line(line)
        else:
            self._pacer.send(line)

    @property
    def unsent(self) -> int:
        """How many lines wait to go out, held back by the server's flood limit."""
        return 0 if self._pacer is None else self._pacer.waiting

    def lineReceived(self, line: bytes) -> None:
        """Show one line from the server, counting errors and noting goodbyes."""
        text = printable(line.rstrip(b"\r").decode(errors="replace"))
        self.heard = True
        if text == "* bye" and self._quitting:
            self._said_bye = True
        elif text.startswith(("* ", "! ")) and text.endswith("; closing"):
            self.closing_reason = text[2 : -len("; closing")]
        if text == "* pong" and self._pongs_owed:
            self._pongs_owed -= 1
            return
        if self._limits_owed and self._take_limits(text):
            return
        if self._quitting and text.startswith("! flood limit: ") and self._quit_refused(text):
            self._send_line(self._quit_line)  # The server's limit is lower than it said; ask again.
            return
        if text.startswith("! "):
            self.refused += 1
        self.display(text)

    def _quit_refused(self, text: str) -> bool:
        """Whether the flood error C{text} refused the C{/quit}, quoting it as the server does."""
        return text.endswith("; line discarded: " + lines.quote_line_start(self._quit_line))

    def send(self, line: bytes) -> None:
        """
        Send one line the user typed; C{exit}, C{/quit} or C{/quit REASON}
        ends the session (the server tells the user's rooms the reason).
        """
        self._sent_lately = True
        found = _QUIT.fullmatch(line.strip())
        if found is None:
            self._send_line(line)
        else:
            self.quit(reason=found["reason"])

    def quit(self, at_once: bool = False, reason: bytes | None = None) -> None:
        """
        Ask the server to say goodbye and close, after the lines still
        waiting to go out, or C{at_once}, dropping them; with a C{reason}
        for the rooms the user is in. Repeated calls do nothing more.
        """
        if at_once and self._pacer is not None:
            self._pacer.stop()
        if not self._quitting:
            self._quitting = True
            if reason:
                self._quit_line = b"/quit " + reason
            self._send_line(self._quit_line)

    @property
    def quitting(self) -> bool:
        """Whether the user asked to end the session."""
        return self._quitting

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Report why the connection never became ready, or whether the session ended as asked."""
        if self._keepalive is not None and self._keepalive.running:
            self._keepalive.stop()
        if self._pacer is not None:
            self._pacer.stop()
        if not self.ready.called:
            self.ready.errback(reason)
        self.finished.callback(self._quitting and self._said_bye)


def _openssl_reason(error: SSL.Error) -> str:
    """OpenSSL's reasons for C{error}, such as C{certificate verify failed}."""
    queue = error.args[0] if error.args else None
    if isinstance(queue, list) and queue and all(isinstance(e, tuple) for e in queue):
        return "; ".join(str(entry[-1]) for entry in queue)
    return str(error) or type(error).__name__


def handshake_failure(error: BaseException, host: str, cafile: str | None) -> str:
    """
    Why the TLS handshake with C{host} failed, for the user.

    @param error: the reason the connection was lost during the handshake.
    @param cafile: the C{--cafile} given, if any.
    """
    if isinstance(error, VerificationError):
        return f"TLS certificate not trusted: it is not valid for {host}"
    if isinstance(error, SSL.Error):
        reason = _openssl_reason(error)
        if "certificate verify failed" in reason:
            if cafile is None:
                against = (
                    "this system's certificate authorities; "
                    "for a self-signed certificate use --cafile"
                )
            else:
                against = cafile
            return f"TLS certificate not trusted: {reason} (checked against {against})"
        if "wrong version number" in reason:
            return f"TLS handshake failed: {reason} (is this the server's TLS port?)"
        return f"TLS handshake failed: {reason}"
    if isinstance(error, neterror.ConnectionClosed):
        return "the server closed the connection during the TLS handshake"
    return f"TLS handshake failed: {error}"


class Screen(TypingProtocol):
    """The user's side of standard input and output, as a session needs it."""

    def show(self, text: str) -> None:
        """Show one line from the server."""

    def close(self) -> Deferred[None]:
        """Flush what is left to show and close; the Deferred fires when done."""


@implementer(IHalfCloseableProtocol)
class PipeScreen(LineReceiver):
    """Standard input and output when they are not a terminal: plain lines both ways."""

    delimiter = b"\n"
    MAX_LENGTH = _LONGEST_LINE

    def __init__(self, send: Callable[[bytes], object], quit: Callable[[], None]) -> None:
        """
        @param send: called with each line read.
        @param quit: called at the end of input, or when output is closed.
        """
        self._send = send
        self._quit = quit
        self.closed: Deferred[None] = Deferred()

    def lineReceived(self, line: bytes) -> None:
        """Send a line read from standard input."""
        self._send(line.rstrip(b"\r"))

    def show(self, text: str) -> None:
        """Write a line from the server to standard output."""
        _transport(self).write(text.encode() + b"\n")

    def readConnectionLost(self) -> None:
        """End of input: send a last line that had no line ending, then quit."""
        unterminated = self.clearLineBuffer()
        if unterminated:
            self.lineReceived(unterminated)
        self._quit()

    def writeConnectionLost(self) -> None:
        """Standard output closed: nothing to show any more, so quit."""
        self._quit()

    def close(self) -> Deferred[None]:
        """Flush standard output and close it."""
        _transport(self).loseConnection()
        return self.closed

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Output is flushed."""
        self.closed.callback(None)


@contextmanager
def _terminal_mode(fd: int) -> Iterator[None]:
    """Raw input (keys one at a time, no echo), but keep LF meaning a new line on output."""
    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    attributes = termios.tcgetattr(fd)
    attributes[1] |= termios.OPOST | termios.ONLCR
    termios.tcsetattr(fd, termios.TCSANOW, attributes)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSANOW, saved)


def _follow_window_size(reactor: IReactorFromThreads, screen: TerminalScreen) -> None:
    """
    Have C{screen} redrawn whenever the terminal window changes size (SIGWINCH),
    until it closes.

    The signal can come between any two steps of the program, in the middle
    of a redraw too; so, as Twisted's own signal handlers do, the handler
    only asks the reactor to redraw at its next turn.
    """

    def changed(number: int, frame: FrameType | None) -> None:
        reactor.callFromThread(screen.resized)

    previous = signal.signal(signal.SIGWINCH, changed)

    def restore(result: None) -> None:
        signal.signal(signal.SIGWINCH, signal.SIG_DFL if previous is None else previous)

    screen.closed.addCallback(restore)


def _endpoint(reactor: IReactorTCP, options: ClientOptions) -> IStreamClientEndpoint:
    """Where to connect: the server's host and port, through TLS if asked."""
    endpoint = HostnameEndpoint(reactor, options["host"], options["port"])
    if options.tls_options is None:
        return endpoint
    return wrapClientTLS(options.tls_options, endpoint)


def _address(options: ClientOptions) -> str:
    host = options["host"]
    return f"[{host}]:{options['port']}" if ":" in host else f"{host}:{options['port']}"


def connect_failure(error: BaseException) -> str:
    """Why a connection attempt failed, in a few words, once (Twisted's texts say it twice)."""
    if isinstance(error, neterror.ConnectionRefusedError):
        return "connection refused (is the server running, on this port?)"
    if isinstance(error, neterror.DNSLookupError):
        return "no such host"
    if isinstance(error, neterror.TCPTimedOutError | TimeoutError):
        return "no answer (timed out)"
    if isinstance(error, neterror.NoRouteError):
        return "no route to the host"
    return str(error) or type(error).__name__


_T = TypeVar("_T")


def _why_it_ended(connection: ServerConnection, options: ClientOptions) -> str:
    """Why a session ended that the user did not end, in a few words."""
    if connection.closing_reason is not None:
        return f"the server closed the connection: {connection.closing_reason}"
    if not connection.heard and options.tls_options is None:
        return (
            f"{_address(options)} closed the connection without a word "
            "(is it a TLS port? then use --tls)"
        )
    return "connection to the server was lost"


RECONNECT_DELAYS = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
"""Seconds before each try to reconnect; the last repeats."""

STABLE_CONNECTION = 30.0
"""Seconds a connection must have lasted for the next reconnection to start at the first delay."""

_NO_RECONNECT_REASONS = ("logged in from another connection",)
"""Why the server may close a connection that the client must not take back."""

_WRONG_SERVER_PASSWORD = "wrong server password"
"""Why the server closes a connection that gave a wrong server password."""

_GREETING = "* connected from "
_PASSWORD_FIRST = " — this server has a password"
"""What the server's greeting says, after the address, on a server with a password."""

_PASS = re.compile(rb"/pass\s+(?P<password>.+)", re.IGNORECASE | re.DOTALL)
"""A server password the user typed, to give again on reconnecting once the server takes it."""


class _Cannot(Exception):
    """A connection attempt failed; the message says why."""


class ClientSession:
    """
    One user's chat, across connections: the screen, the user's nickname,
    account and rooms, and reconnecting when the server goes away.

    On a terminal, unless told not to, a lost connection is retried with
    growing delays (L{RECONNECT_DELAYS}, a little randomised), saying so on
    screen; the line being typed stays; the nickname is taken again, the
    password asked for again if it was an account, and the rooms joined
    again. Lines entered while not connected are not sent and stay being
    edited. Client notices start with C{-- }, which no server line does.

    On a server with a password, the password (from C{--server-password-file},
    or once the server accepted one the user gave) goes first on every
    connection, before the nickname. On a terminal without one, the client
    waits for the server's greeting and, if it says the server has a
    password, asks for it without showing it, then registers.
    """

    def __init__(
        self,
        reactor: Any,
        options: ClientOptions,
        terminal: bool,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        """
        @param reactor: connects, and keeps time.
        @param terminal: standard input and output are a terminal.
        @param jitter: a number in [0, 1) for each delay, spreading the
            reconnections of many clients after a server restart.
        """
        self._reactor = reactor
        self._clock: IReactorTime = reactor
        self._options = options
        self._terminal = terminal
        self._jitter = jitter
        self._reconnect = terminal and not options["no-reconnect"]
        self._connection: ServerConnection | None = None
        self._screen: Screen | None = None
        self._prompt: TerminalScreen | None = None
        self._quit_asked = False
        self._waiting: Deferred[Any] | None = None
        self._nick: str | None = None
        self._account = False
        self._password: bytes | None = None
        self._server_password = options.server_password
        self._offered: bytes | None = None
        self._greeted: Callable[[], None] | None = None
        self._first_line = False
        self._rejoining = False
        self._rooms: dict[str, str] = {}

    async def run(self) -> None:
        """
        Connect, wire standard input and output to the server, and run until the session ends.

        @raise SystemExit: with 1 when the server cannot be reached at
            first (with TLS: its certificate does not verify) or the
            connection is lost and not taken back; with 3 when, not on a
            terminal, the server answered any line with an error.
        """
        try:
            connection = await self._connect()
        except _Cannot as error:
            sys.stderr.write(f"cannot connect to {_address(self._options)}: {error}\n")
            raise SystemExit(1) from None
        protocol, self._screen = self._make_screen()
        StandardIO(protocol, reactor=self._reactor)
        self._attach(connection)
        self._take_up(connection)
        ending = await self._session()
        await self._screen.close()
        if ending is not None:
            sys.stderr.write(ending + "\n")
            raise SystemExit(1)
        if connection.refused and not self._terminal:
            sys.stderr.write(f"lines refused by the server: {connection.refused}\n")
            raise SystemExit(3)

    async def _session(self) -> str | None:
        """Run connection after connection; None when the user ended it, else why it ended."""
        attempt = 0
        while True:
            connection = self._connection
            assert connection is not None
            began = self._clock.seconds()
            clean = await connection.finished
            self._connection = None
            if clean or self._quit_asked:
                return None
            if not self._reconnect or not self._worth_reconnecting(connection.closing_reason):
                return _why_it_ended(connection, self._options)
            why = connection.closing_reason or _why_it_ended(connection, self._options)
            if self._clock.seconds() - began >= STABLE_CONNECTION:
                attempt = 0
            while self._connection is None:
                delay = self._delay(attempt)
                attempt += 1
                self._notice(f"{why}; reconnecting in {delay:.0f} s (Ctrl-C quits)")
                waited: Deferred[bool] = deferLater(self._clock, delay, lambda: True)
                if not await self._unless_quit(waited):
                    return None
                if self._password is None and self._account and self._prompt is not None:
                    # Asked before connecting, so the server's nickname timeout cannot run out.
                    self._password = await self._unless_quit(self._ask_password(self._prompt))
                    if self._password is None:
                        return None
                try:
                    reconnected = await self._unless_quit(Deferred.fromCoroutine(self._connect()))
                except _Cannot as error:
                    why = f"cannot connect to {_address(self._options)}: {error}"
                    continue
                if reconnected is None:
                    return None
                self._attach(reconnected)
                self._take_up(reconnected)

    def _worth_reconnecting(self, reason: str | None) -> bool:
        """
        Whether to take back a connection the server closed for C{reason}:
        not after a login elsewhere, nor after the server gave up waiting
        for a nickname that was never chosen.
        """
        if reason in _NO_RECONNECT_REASONS:
            return False
        if reason == _WRONG_SERVER_PASSWORD:
            # One from the file would be refused again; one typed is asked for again.
            return self._options.server_password is None
        return not (reason is not None and reason.startswith("no nickname") and self._nick is None)

    def _ask_password(self, prompt: TerminalScreen) -> Deferred[bytes]:
        """Deferred firing with the password the user types for their account."""
        answered: Deferred[bytes] = Deferred()
        prompt.ask_secret(f"password for {self._nick}: ", answered.callback)
        return answered

    def _delay(self, attempt: int) -> float:
        delay = RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)]
        return delay * (0.75 + 0.5 * self._jitter())

    async def _unless_quit(self, waiting: Deferred[_T]) -> _T | None:
        """What C{waiting} gives, or None if the user quits first (which cancels it)."""
        self._waiting = waiting
        try:
            return await waiting
        except CancelledError:
            return None
        finally:
            self._waiting = None

    async def _connect(self) -> ServerConnection:
        """A new connection, ready to use; failing with L{_Cannot} and why."""
        options = self._options
        connection = ServerConnection(tls=options.tls_options is not None)
        try:
            await connectProtocol(_endpoint(self._reactor, options), connection)
        except CancelledError:
            raise
        except Exception as error:
            raise _Cannot(connect_failure(error)) from None
        try:
            await connection.ready
        except Exception as error:
            raise _Cannot(handshake_failure(error, options["host"], options["cafile"])) from None
        return connection

    def _make_screen(self) -> tuple[Protocol, Screen]:
        """The protocol to run on standard input and output, and the screen inside it."""
        if not self._terminal:
            pipe = PipeScreen(self._send, self._quit_at_end)
            return pipe, pipe
        screen = TerminalScreen(
            self._send,
            self._quit_now,
            lambda: os.get_terminal_size(1).columns,
            split_password,
            rows=lambda: os.get_terminal_size(1).lines,
        )
        _follow_window_size(IReactorFromThreads(self._reactor), screen)
        self._prompt = screen
        return Keyboard(lambda: screen), screen

    def _attach(self, connection: ServerConnection) -> None:
        self._connection = connection
        self._first_line = True
        connection.display = self._show
        connection.start(self._clock)

    def _take_up(self, connection: ServerConnection) -> None:
        """
        Register on a new connection (L{_register}); on a terminal, with no
        server password known, once the greeting has said whether the server
        wants one (L{_greet}).
        """
        if self._prompt is not None and self._server_password is None:
            self._greeted = lambda: self._register(connection)
            return
        self._register(connection)

    def _register(self, connection: ServerConnection) -> None:
        """
        The server password, if known; then the nickname: C{--nick} until
        the server has confirmed one; after a reconnection the nickname
        again (logged in, if it was an account), then, once the server has
        confirmed it, the rooms.
        """
        if connection is not self._connection:
            return  # lost meanwhile
        if self._server_password is not None:
            connection.send(b"/pass " + self._server_password)
        if self._nick is None:
            if self._options["nick"]:
                connection.send(b"#" + self._options["nick"].encode())
            return
        password, self._password = self._password, None
        if password is None:
            connection.send(b"#" + self._nick.encode())
        else:
            connection.send(b"#" + self._nick.encode() + b" " + password)
        self._rejoining = True

    def _registers_itself(self) -> bool:
        """Whether the client takes the nickname by itself on this connection."""
        return bool(self._options["nick"]) or self._nick is not None

    def _greet(self, text: str) -> str:
        """
        The server's greeting: register now, or first ask for the server
        password if the greeting says there is one. What to show of it: on a
        terminal, when the client registers by itself, not the server's
        hint of how to register.
        """
        greeted, self._greeted = self._greeted, None
        wants_password = _PASSWORD_FIRST in text
        address = text.partition(" — ")[0]
        connection = self._connection
        if greeted is not None and wants_password and self._prompt is not None:

            def answered(password: bytes) -> None:
                if connection is not None and connection is self._connection:
                    self._offered = password
                    connection.send(b"/pass " + password)
                    greeted()

            self._prompt.ask_secret("server password: ", answered)
            return address + _PASSWORD_FIRST
        if greeted is not None:
            greeted()
        if self._prompt is None or not self._registers_itself():
            return text
        if wants_password and self._server_password is None:
            return text
        return address

    def _log_in_again(self, password: bytes) -> None:
        """The user typed the password again, after a failed login."""
        if self._connection is not None and self._nick is not None:
            self._connection.send(b"#" + self._nick.encode() + b" " + password)

    def _send(self, line: bytes) -> bool:
        """Send a line the user entered, if connected; whether it was sent."""
        if self._connection is None:
            self._notice("not connected: the line was not sent; press Enter again once reconnected")
            return False
        offered = _PASS.fullmatch(line.strip())
        if offered is not None:
            self._offered = offered["password"].strip()  # kept for reconnections once accepted
        self._connection.send(line)
        return True

    def _quit_at_end(self) -> None:
        """End of piped input: quit once every line before has gone out."""
        if self._connection is not None:
            self._connection.quit()

    def _quit_now(self) -> None:
        """The user asked to quit: lines not yet sent are dropped."""
        self._quit_asked = True
        if self._waiting is not None:
            self._waiting.cancel()
        if self._connection is not None:
            self._connection.quit(at_once=True)

    def _notice(self, text: str) -> None:
        assert self._screen is not None
        self._screen.show(f"-- {text}")

    def _show(self, text: str) -> None:
        """Show a line from the server, noting the user's nickname, account and rooms."""
        assert self._screen is not None
        shown = text
        if self._first_line:
            self._first_line = False
            if text.startswith(_GREETING):
                shown = self._greet(text)
            else:
                self._greeted = None  # refused (the server is full, say): it closes
        self._screen.show(shown)
        self._follow(text)

    def _join_again(self) -> None:
        """Once the nickname is back after a reconnection, join the rooms again."""
        if self._rejoining and self._connection is not None:
            self._rejoining = False
            for room in self._rooms.values():
                self._connection.send(b"/join " + room.encode())

    def _follow(self, text: str) -> None:
        if (
            self._rejoining
            and self._account
            and self._prompt is not None
            and text.startswith(("! wrong nickname or password", "! too many failed logins"))
        ):
            self._prompt.ask_secret(f"password for {self._nick}: ", self._log_in_again)
            return
        if not text.startswith("* "):
            return
        if text == "* server password accepted" and self._offered is not None:
            self._server_password, self._offered = self._offered, None
            return
        notice = text[2:]
        if notice.startswith("registered as "):
            self._nick, self._account = notice.removeprefix("registered as "), False
            self._join_again()
            return
        if notice.startswith("logged in as "):
            self._nick, self._account = notice.removeprefix("logged in as ").split(";")[0], True
            self._join_again()
            return
        if self._nick is None:
            return
        who, _, what = notice.partition(" ")
        if who.lower() != self._nick.lower():
            return
        if what.startswith("is now a registered account"):
            self._account = True
        elif what.startswith("joined #"):
            room = what[len("joined ") :]
            self._rooms[room.lower()] = room
        elif what.startswith(("left #", "was kicked from #")):
            room = what.removeprefix("was kicked from ").removeprefix("left ").split()[0]
            self._rooms.pop(room.lower(), None)


async def run(reactor: Any, options: ClientOptions, terminal: bool) -> None:
    """Run one session of the client (see L{ClientSession.run})."""
    await ClientSession(reactor, options, terminal).run()


def main(argv: list[str] | None = None) -> NoReturn:
    """The C{chatroute-client} command."""
    options = ClientOptions()
    options.parse_or_exit(argv)
    terminal = os.isatty(0) and os.isatty(1)

    def start(reactor: Any) -> Deferred[None]:
        return Deferred.fromCoroutine(run(reactor, options, terminal))

    if not terminal:
        react(start)
    with _terminal_mode(0):
        react(start)
    raise AssertionError("react() always exits")


if __name__ == "__main__":
    main()
