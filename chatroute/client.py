"""
The terminal client: C{chatroute-client --host H --port P [--nick NAME] [--tls]}.

Lines typed (or piped) are sent to the server as they are; lines from the
server are shown as they arrive, never waiting for input. On a terminal the
line being typed keeps its own prompt line, with editing keys and history,
while messages scroll above it. Piped input is sent in order; at its end the
client says C{/quit} and waits for the server to close, so everything is
delivered (and every reply shown) before it exits.

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
import re
import sys
import termios
import tty
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, NoReturn
from typing import Protocol as TypingProtocol

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL
from service_identity import VerificationError
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, connectProtocol, wrapClientTLS
from twisted.internet.error import ConnectionClosed
from twisted.internet.interfaces import (
    IHalfCloseableProtocol,
    IHandshakeListener,
    IOpenSSLClientConnectionCreator,
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
from twisted.internet.task import LoopingCall, react
from twisted.protocols.basic import LineReceiver
from twisted.python import usage
from twisted.python.failure import Failure
from zope.interface import implementer

from chatroute.lines import CONTROL_CHARACTERS
from chatroute.options import CommandOptions, port_number
from chatroute.terminal import Keyboard, TerminalScreen

QUIT_WORDS = (b"exit", b"/quit")
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
        "Usage: chatroute-client [--host HOST] [--port PORT] [--nick NAME] [--tls [--cafile FILE]]"
    )
    longdesc = (
        "Chat on a chatroute server. Lines typed, or piped in, are sent to the server; its "
        "lines are shown as they arrive. Exit status: 0 after a clean quit, 1 if the "
        "connection failed or was lost, 2 for a usage error, 3 (piped input only) if the "
        "server answered any line with an error. With --tls the server's certificate must "
        "be valid for --host and signed by an authority the system trusts, or by one in "
        "--cafile; if it is not, the client exits with 1 before sending anything."
    )
    optFlags: ClassVar[list[list[str | None]]] = [
        ["tls", None, "Connect with TLS; the server's certificate must verify for --host."],
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
    ]

    def __init__(self) -> None:
        super().__init__()
        self.tls_options: IOpenSSLClientConnectionCreator | None = None

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


_PASSWORD_LINES = re.compile(
    rb"(?P<keep>\s*(?:#\S+|/login\s+\S+|/register|/password)\s+)(?P<secret>.+)",
    re.IGNORECASE | re.DOTALL,
)


def conceal(line: bytes) -> bytes:
    """C{line} with the passwords in C{#name pw}, C{/login}, C{/register}, C{/password} hidden."""
    found = _PASSWORD_LINES.fullmatch(line)
    if found is None:
        return line
    hidden = re.sub(rb"\S", b"*", found["secret"])
    return found["keep"] + hidden


def printable(text: str) -> str:
    """C{text} with control characters replaced, so a server cannot drive the terminal."""
    return CONTROL_CHARACTERS.sub("\N{REPLACEMENT CHARACTER}", text)


def _transport(protocol: Protocol) -> ITransport:
    transport = protocol.transport
    assert transport is not None, "used only while connected"
    return transport


KEEPALIVE_INTERVAL = 240.0
"""Seconds of silence after which the client pings (the server's default idle timeout is 900)."""


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
        (from a C{* REASON; closing} notice), if it did.
    @ivar refused: how many lines the server answered with an error (C{! ...}).
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
        self._tls = tls
        self._keepalive: LoopingCall | None = None
        self._said_bye = False
        self.heard = False
        self.closing_reason: str | None = None
        self._sent_lately = False
        self._pongs_owed = 0

    def connectionMade(self) -> None:
        """Over plain TCP, the connection is ready at once."""
        if not self._tls:
            self.ready.callback(None)

    def handshakeCompleted(self) -> None:
        """The server's certificate verified: the connection is ready."""
        self.ready.callback(None)

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
            _transport(self).write(b"/ping\r\n")
        self._sent_lately = False

    def lineReceived(self, line: bytes) -> None:
        """Show one line from the server, counting errors and noting goodbyes."""
        text = printable(line.rstrip(b"\r").decode(errors="replace"))
        self.heard = True
        if text == "* bye" and self._quitting:
            self._said_bye = True
        elif text.startswith("* ") and text.endswith("; closing"):
            self.closing_reason = text[2 : -len("; closing")]
        if text == "* pong" and self._pongs_owed:
            self._pongs_owed -= 1
            return
        if text.startswith("! "):
            self.refused += 1
        self.display(text)

    def send(self, line: bytes) -> None:
        """Send one line the user typed; C{exit} or C{/quit} ends the session."""
        self._sent_lately = True
        word = line.strip().lower()
        if word in QUIT_WORDS:
            self.quit()
        else:
            _transport(self).write(line + b"\r\n")

    def quit(self) -> None:
        """Ask the server to say goodbye and close; repeated calls do nothing more."""
        if not self._quitting:
            self._quitting = True
            _transport(self).write(b"/quit\r\n")

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Report why the connection never became ready, or whether the session ended as asked."""
        if self._keepalive is not None and self._keepalive.running:
            self._keepalive.stop()
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
    if isinstance(error, ConnectionClosed):
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

    def __init__(self, connection: ServerConnection) -> None:
        self._connection = connection
        self.closed: Deferred[None] = Deferred()

    def lineReceived(self, line: bytes) -> None:
        """Send a line read from standard input."""
        self._connection.send(line.rstrip(b"\r"))

    def show(self, text: str) -> None:
        """Write a line from the server to standard output."""
        _transport(self).write(text.encode() + b"\n")

    def readConnectionLost(self) -> None:
        """End of input: send a last line that had no line ending, then quit."""
        unterminated = self.clearLineBuffer()
        if unterminated:
            self.lineReceived(unterminated)
        self._connection.quit()

    def writeConnectionLost(self) -> None:
        """Standard output closed: nothing to show any more, so quit."""
        self._connection.quit()

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


def _screen(connection: ServerConnection, terminal: bool) -> tuple[Protocol, Screen]:
    """The protocol to run on standard input and output, and the screen inside it."""
    if terminal:
        screen = TerminalScreen(
            connection.send, connection.quit, lambda: os.get_terminal_size(1).columns, conceal
        )
        return Keyboard(lambda: screen), screen
    pipe = PipeScreen(connection)
    return pipe, pipe


def _endpoint(reactor: IReactorTCP, options: ClientOptions) -> IStreamClientEndpoint:
    """Where to connect: the server's host and port, through TLS if asked."""
    endpoint = HostnameEndpoint(reactor, options["host"], options["port"])
    if options.tls_options is None:
        return endpoint
    return wrapClientTLS(options.tls_options, endpoint)


def _address(options: ClientOptions) -> str:
    host = options["host"]
    return f"[{host}]:{options['port']}" if ":" in host else f"{host}:{options['port']}"


def _cannot_connect(options: ClientOptions, why: str) -> NoReturn:
    sys.stderr.write(f"cannot connect to {_address(options)}: {why}\n")
    raise SystemExit(1) from None


def _why_it_ended(connection: ServerConnection, options: ClientOptions) -> str:
    """The line telling the user why a session ended that they did not end."""
    if connection.closing_reason is not None:
        return f"the server closed the connection: {connection.closing_reason}\n"
    if not connection.heard and options.tls_options is None:
        return (
            f"{_address(options)} closed the connection without a word "
            "(is it a TLS port? then use --tls)\n"
        )
    return "connection to the server was lost\n"


async def run(reactor: IReactorTCP, options: ClientOptions, terminal: bool) -> None:
    """
    Connect, wire standard input and output to the server, and run until the session ends.

    @raise SystemExit: with 1 when the server cannot be reached (with TLS:
        its certificate does not verify) or the connection is lost before
        the user quits; with 3 when, not on a C{terminal}, the server
        answered any line with an error.
    """
    connection = ServerConnection(tls=options.tls_options is not None)
    try:
        await connectProtocol(_endpoint(reactor, options), connection)
    except Exception as error:
        _cannot_connect(options, str(error))
    try:
        await connection.ready
    except Exception as error:
        _cannot_connect(options, handshake_failure(error, options["host"], options["cafile"]))
    protocol, screen = _screen(connection, terminal)
    connection.display = screen.show
    connection.keep_alive(IReactorTime(reactor))
    StandardIO(protocol, reactor=reactor)
    if options["nick"]:
        connection.send(b"#" + options["nick"].encode())
    clean = await connection.finished
    await screen.close()
    if not clean:
        sys.stderr.write(_why_it_ended(connection, options))
        raise SystemExit(1)
    if connection.refused and not terminal:
        sys.stderr.write(f"lines refused by the server: {connection.refused}\n")
        raise SystemExit(3)


def main(argv: list[str] | None = None) -> NoReturn:
    """The C{chatroute-client} command."""
    options = ClientOptions()
    try:
        options.parseOptions(sys.argv[1:] if argv is None else argv)
    except usage.UsageError as error:
        sys.stderr.write(f"chatroute-client: {error}\n{options.synopsis}\n(--help for more)\n")
        raise SystemExit(2) from None
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
