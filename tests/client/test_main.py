"""The terminal client's parts, over in-memory transports."""

import ipaddress
import signal
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import pytest
from OpenSSL import SSL
from service_identity import VerificationError
from twisted.internet.error import (
    ConnectionLost,
    ConnectionRefusedError,
    DNSLookupError,
    TCPTimedOutError,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import PrivateCertificate
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.python.usage import UsageError
from twisted.test.iosim import connectedServerAndClient

from chatroute.certs import make_certificate
from chatroute.client.main import (
    ClientOptions,
    PipeScreen,
    ServerConnection,
    _follow_window_size,
    client_tls,
    connect_failure,
    handshake_failure,
    main,
    printable,
    split_password,
)
from chatroute.client.terminal import TerminalScreen


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
    assert str(raised.value) == f"--port: expected a TCP port number 1-65535, got {port!r}"


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
    assert error.startswith(
        "chatroute-client: --port: expected a TCP port number 1-65535, got 'abc'"
    )
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


@pytest.mark.parametrize("line", [b"/quit bye all", b"/QUIT  bye all ", b"/quit\tbye all"])
def test_quit_with_a_reason_ends_the_session_and_gives_the_reason(connection, line):
    results = []
    connection.finished.addCallback(results.append)
    connection.send(line)
    assert connection.quitting
    assert sent(connection) == b"/quit bye all\r\n"
    connection.dataReceived(b"* bye\r\n")
    connection.connectionLost(Failure(ConnectionError("gone")))
    assert results == [True]


@pytest.mark.parametrize("line", [b"/quitter", b"exit now", b"/quits"])
def test_only_quit_words_quit(connection, line):
    connection.send(line)
    assert not connection.quitting
    assert sent(connection) == line + b"\r\n"


@pytest.mark.parametrize(
    ("quit_first", "answer", "clean"),
    [(True, b"* bye\r\n", True), (True, b"", False), (False, b"* bye\r\n", False)],
)
def test_finished_tells_whether_the_user_quit_and_the_server_said_goodbye(
    connection, quit_first, answer, clean
):
    results = []
    connection.finished.addCallback(results.append)
    if quit_first:
        connection.quit()
    connection.dataReceived(answer)
    connection.connectionLost(Failure(ConnectionError("gone")))
    assert results == [clean]


def test_a_closing_notice_gives_the_reason(connection):
    connection.dataReceived(b"* logged in from another connection; closing\r\n")
    assert connection.closing_reason == "logged in from another connection"


def test_a_closing_error_gives_the_reason(connection):
    connection.dataReceived(b"! wrong server password; closing\r\n")
    assert connection.closing_reason == "wrong server password"


def test_the_server_password_comes_from_the_first_line_of_a_file(tmp_path):
    path = tmp_path / "password"
    path.write_text("  open sesame \nnot this\n")
    options = ClientOptions()
    options.parseOptions(["--server-password-file", str(path)])
    assert options.server_password == b"open sesame"
    assert ClientOptions().server_password is None


@pytest.mark.parametrize(
    ("content", "error"), [(None, "cannot read"), ("", "is blank"), ("  \nsecond\n", "is blank")]
)
def test_a_server_password_file_must_hold_one(tmp_path, content, error):
    path = tmp_path / "password"
    if content is not None:
        path.write_text(content)
    with pytest.raises(UsageError, match=f"--server-password-file: .*{error}"):
        ClientOptions().parseOptions(["--server-password-file", str(path)])


def test_pipe_input_sends_each_line_and_quits_at_end(connection):
    pipe = PipeScreen(connection.send, connection.quit)
    stdout = StringTransport()
    pipe.makeConnection(stdout)
    pipe.dataReceived(b"#alice\r\n@bob:hi\n")
    assert sent(connection) == b"#alice\r\n@bob:hi\r\n"
    pipe.show("<bob> hello")
    assert stdout.value() == b"<bob> hello\n"
    pipe.readConnectionLost()
    assert sent(connection).endswith(b"/quit\r\n")


@pytest.mark.parametrize(
    ("line", "before"),
    [
        (b"#alice secret123", b"#alice "),
        (b"/login Alice pw", b"/login Alice "),
        (b"/LOGIN Alice pw", b"/LOGIN Alice "),
        (b"/register correct horse battery staple", b"/register "),
        (b"/password old new1", b"/password "),
        ("#alice pässwörd".encode(), b"#alice "),
        (b"#alice", None),
        (b"@bob:#x y", None),
        (b"/join #x", None),
    ],
)
def test_lines_are_cut_where_their_password_starts(line, before):
    parts = split_password(line)
    if before is None:
        assert parts is None
    else:
        assert parts == (before, line[len(before) :])


def parse(*argv: str) -> ClientOptions:
    options = ClientOptions()
    options.parseOptions(list(argv))
    return options


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> dict[str, Path]:
    """Self-signed certificates (each with its key) for all of localhost, for its name only."""
    directory = tmp_path_factory.mktemp("certs")
    now = datetime.now(UTC)
    made = {}
    for name, hosts in [
        ("loopback", ["localhost", ipaddress.ip_address("127.0.0.1")]),
        ("name-only", ["localhost"]),
    ]:
        key, cert = make_certificate(hosts, 1, now)
        made[name] = directory / f"{name}.pem"
        made[name].write_bytes(cert + key)
    return made


def test_plain_tcp_by_default():
    assert parse().tls_options is None
    assert not parse()["tls"]


def test_tls_options(certificates):
    assert parse("--tls").tls_options is not None
    with_cafile = parse("--cafile", str(certificates["loopback"]))
    assert with_cafile["tls"]
    assert with_cafile.tls_options is not None


def test_cafile_may_hold_several_certificates(certificates, tmp_path):
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(b"".join(path.read_bytes() for path in certificates.values()))
    assert parse("--tls", "--cafile", str(bundle)).tls_options is not None


def test_a_missing_cafile_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError) as raised:
        parse("--cafile", str(tmp_path / "nothing.pem"))
    assert str(raised.value) == (
        f"cannot read --cafile {tmp_path / 'nothing.pem'}: No such file or directory"
    )


def test_a_cafile_without_a_certificate_is_a_usage_error(tmp_path):
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(UsageError) as raised:
        parse("--tls", "--cafile", str(junk))
    assert str(raised.value) == f"--cafile {junk} holds no PEM certificate"


def test_a_host_that_cannot_be_checked_against_a_certificate_is_a_usage_error():
    with pytest.raises(UsageError) as raised:
        parse("--tls", "--host", "exa mple.org")
    assert str(raised.value) == "--host 'exa mple.org' is not a valid host name"
    assert parse("--host", "exa mple.org").tls_options is None


def test_plain_connection_is_ready_when_connected(connection):
    results = []
    connection.ready.addCallback(results.append)
    assert results == [None]


def test_tls_connection_is_ready_after_the_handshake():
    connection = ServerConnection(tls=True)
    results = []
    connection.ready.addCallback(results.append)
    connection.makeConnection(StringTransport())
    assert results == []
    connection.handshakeCompleted()
    assert results == [None]


def test_connection_lost_before_ready_fails_ready():
    connection = ServerConnection(tls=True)
    connection.makeConnection(StringTransport())
    reason = Failure(SSL.Error([("SSL routines", "", "certificate verify failed")]))
    connection.connectionLost(reason)
    failures = []
    connection.ready.addErrback(failures.append)
    assert failures == [reason]
    assert connection.finished.result is False


# Twisted hands the server's key and certificate to pyOpenSSL in a form it deprecates.
_twisted_tls_server = pytest.mark.filterwarnings("ignore:Passing pyOpenSSL:DeprecationWarning")


def tls_session(host: str, cafile: Path, served: Path) -> tuple[ServerConnection, list[str]]:
    """
    A client connection, set up as the client's options C{--cafile} and
    C{--host} would, to an in-memory TLS server with the certificate and key
    in C{served}, which greets it.

    @return: the connection and the lines it received.
    """

    class Greeter(Protocol):
        def connectionMade(self):
            self.transport.write(b"* hello\r\n")

    # The TLS layer gathers small writes and sends them on the next tick of this clock.
    clock = Clock()
    server_tls = PrivateCertificate.loadPEM(served.read_text()).options()
    server = TLSMemoryBIOFactory(server_tls, False, Factory.forProtocol(Greeter), clock=clock)
    connection = ServerConnection(tls=True)
    shown: list[str] = []
    connection.display = shown.append
    client = TLSMemoryBIOFactory(
        client_tls(host, str(cafile)), True, Factory.forProtocol(lambda: connection), clock=clock
    )
    _, _, pump = connectedServerAndClient(
        lambda: server.buildProtocol(None), lambda: client.buildProtocol(None), clock=clock
    )
    pump.flush()
    return connection, shown


@_twisted_tls_server
@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_tls_with_a_trusted_certificate_for_the_host(certificates, host):
    connection, shown = tls_session(host, certificates["loopback"], certificates["loopback"])
    assert connection.ready.called
    assert shown == ["* hello"]


@_twisted_tls_server
def test_tls_refuses_a_certificate_signed_by_another(certificates):
    connection, shown = tls_session(
        "localhost", certificates["name-only"], certificates["loopback"]
    )
    failures = []
    connection.ready.addErrback(failures.append)
    assert failures[0].check(SSL.Error)
    assert shown == []


@_twisted_tls_server
def test_tls_refuses_a_certificate_for_another_host(certificates):
    connection, shown = tls_session(
        "127.0.0.1", certificates["name-only"], certificates["name-only"]
    )
    failures = []
    connection.ready.addErrback(failures.append)
    assert failures[0].check(VerificationError)
    assert shown == []


@pytest.mark.parametrize(
    ("error", "cafile", "message"),
    [
        (
            VerificationError(errors=[]),
            "cert.pem",
            "TLS certificate not trusted: it is not valid for 127.0.0.1",
        ),
        (
            SSL.Error([("SSL routines", "", "certificate verify failed")]),
            None,
            "TLS certificate not trusted: certificate verify failed (checked against this "
            "system's certificate authorities; for a self-signed certificate use --cafile)",
        ),
        (
            SSL.Error([("SSL routines", "", "certificate verify failed")]),
            "cert.pem",
            "TLS certificate not trusted: certificate verify failed (checked against cert.pem)",
        ),
        (
            SSL.Error([("SSL routines", "", "wrong version number")]),
            None,
            "TLS handshake failed: wrong version number (is this the server's TLS port?)",
        ),
        (
            SSL.Error([("SSL routines", "", "no shared cipher"), ("x", "", "y")]),
            None,
            "TLS handshake failed: no shared cipher; y",
        ),
        (SSL.Error("odd"), None, "TLS handshake failed: odd"),
        (
            ConnectionLost("Connection lost"),
            None,
            "the server closed the connection during the TLS handshake",
        ),
        (ValueError("odd"), None, "TLS handshake failed: odd"),
    ],
)
def test_handshake_failures_are_explained(error, cafile, message):
    assert handshake_failure(error, "127.0.0.1", cafile) == message


def test_keeps_a_quiet_session_alive_without_showing_the_pongs(connection):
    clock = Clock()
    shown = []
    connection.display = shown.append
    connection.keep_alive(clock, interval=100)
    clock.advance(100)
    assert sent(connection) == b"/ping\r\n"
    connection.dataReceived(b"* pong\r\n")
    assert shown == []
    connection.transport.clear()
    connection.send(b"@bob:hi")
    clock.advance(100)
    assert sent(connection) == b"@bob:hi\r\n", "no ping after something was sent"
    connection.send(b"/ping")
    connection.dataReceived(b"* pong\r\n")
    assert shown == ["* pong"], "the user's own pings are answered on screen"
    connection.connectionLost(Failure(ConnectionError("gone")))
    assert not clock.getDelayedCalls()


def started(connection: ServerConnection) -> Clock:
    clock = Clock()
    connection.start(clock)
    assert sent(connection) == b"/limits\r\n"
    connection.transport.clear()
    return clock


LIMITS = b"* limits: flood-rate=10 flood-burst=20 max-line-length=4096 idle-timeout=900\r\n"


def test_lines_wait_for_the_servers_limits_whose_answer_is_hidden(connection):
    shown = []
    connection.display = shown.append
    started(connection)
    connection.send(b"#alice")
    assert sent(connection) == b""
    connection.dataReceived(b"* connected from 127.0.0.1:4000 - register\r\n")
    connection.dataReceived(LIMITS)
    assert sent(connection) == b"#alice\r\n"
    assert len(shown) == 1 and shown[0].startswith("* connected from")


def test_a_paste_goes_out_whole_within_the_flood_limit(connection):
    clock = started(connection)
    connection.dataReceived(LIMITS)
    for n in range(40):
        connection.send(b"@bob:line-%d" % n)
    assert sent(connection).count(b"\r\n") == 10
    assert connection.unsent == 30
    clock.pump([0.1] * 100)
    assert sent(connection) == b"".join(b"@bob:line-%d\r\n" % n for n in range(40))


def test_quitting_after_a_paste_says_goodbye_after_the_pasted_lines(connection):
    clock = started(connection)
    connection.dataReceived(LIMITS)
    for n in range(30):
        connection.send(b"@bob:%d" % n)
    connection.quit()
    clock.pump([0.1] * 100)
    assert sent(connection).endswith(b"@bob:29\r\n/quit\r\n")


def test_quitting_at_once_drops_the_lines_not_yet_sent(connection):
    clock = started(connection)
    connection.dataReceived(LIMITS)
    for n in range(30):
        connection.send(b"@bob:%d" % n)
    connection.quit(at_once=True)
    clock.pump([0.1] * 100)
    assert sent(connection).endswith(b"@bob:9\r\n/quit\r\n")


def test_a_refused_quit_is_asked_again(connection):
    clock = started(connection)
    connection.dataReceived(LIMITS)
    connection.quit()
    connection.transport.clear()
    connection.dataReceived(
        b"! flood limit: at most 1 line a second (bursts of 1); line discarded: /quit\r\n"
    )
    clock.advance(1)
    assert sent(connection) == b"/quit\r\n"


@pytest.mark.parametrize(
    ("reason", "quoted"),
    [(b"bye all", "/quit bye all"), (b"x" * 60, "/quit " + "x" * 33 + "…")],
)
def test_a_refused_quit_with_a_reason_is_asked_again(connection, reason, quoted):
    clock = started(connection)
    connection.dataReceived(LIMITS)
    connection.send(b"/quit " + reason)
    connection.transport.clear()
    refusal = f"! flood limit: at most 1 line a second (bursts of 1); line discarded: {quoted}"
    connection.dataReceived(refusal.encode() + b"\r\n")
    clock.advance(1)
    assert sent(connection) == b"/quit " + reason + b"\r\n"


def test_a_server_without_limits_gets_the_default_pace(connection):
    shown = []
    connection.display = shown.append
    clock = started(connection)
    for n in range(40):
        connection.send(b"%d" % n)
    connection.dataReceived(b"! unknown command: /limits (try /help)\r\n")
    assert shown == [] and connection.refused == 0
    assert sent(connection).count(b"\r\n") == 10
    clock.pump([0.1] * 100)
    assert sent(connection).count(b"\r\n") == 40


def test_pings_often_enough_for_a_short_idle_timeout(connection):
    clock = started(connection)
    connection.dataReceived(
        b"* limits: flood-rate=0 flood-burst=1 max-line-length=4096 idle-timeout=60\r\n"
    )
    clock.advance(20)
    assert sent(connection) == b"/ping\r\n"


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (
            ConnectionRefusedError("Connection refused"),
            "connection refused (is the server running, on this port?)",
        ),
        (DNSLookupError("nowhere.invalid"), "no such host"),
        (TCPTimedOutError(), "no answer (timed out)"),
    ],
)
def test_connection_failures_are_said_once_in_plain_words(error, said):
    assert connect_failure(error) == said


class ThreadCallsReactor:
    """Records what is handed to the reactor thread."""

    def __init__(self) -> None:
        self.calls: list[Callable[..., object]] = []

    def callFromThread(self, f: Callable[..., object], *args: object, **kwargs: object) -> None:
        self.calls.append(f)


def test_a_window_resize_redraws_the_screen_at_the_reactor_s_next_turn():
    reactor = ThreadCallsReactor()
    screen = TerminalScreen(lambda line: None, lambda: None)
    before = signal.getsignal(signal.SIGWINCH)
    _follow_window_size(reactor, screen)
    signal.raise_signal(signal.SIGWINCH)
    assert reactor.calls == [screen.resized]
    screen.closed.callback(None)
    assert signal.getsignal(signal.SIGWINCH) == before
