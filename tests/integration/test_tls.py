"""
TLS: the real server with a plain and TLS listeners side by side, certificates
made by C{chatroute-makecert}, and the real client, a Python C{ssl} socket and
C{openssl s_client} connecting to it.
"""

import re
import shutil
import signal
import ssl
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from chatroute.certs import listen_description

from .support import (
    READ_TIMEOUT,
    TLS_STARTED,
    ChatConnection,
    ClientProcess,
    ServerProcess,
    make_certificate,
)

pytestmark = pytest.mark.integration

GREETING = r"\* connected from 127\.0\.0\.1:\d+ — register with #yourname"


@dataclass(frozen=True)
class Certificates:
    """Self-signed certificates made by the command, with their keys."""

    directory: Path

    def cert(self, name: str) -> Path:
        return self.directory / f"{name}.cert.pem"

    def key(self, name: str) -> Path:
        return self.directory / f"{name}.key.pem"


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """
    C{loopback}: for the default names (localhost, 127.0.0.1, ::1);
    C{name-only}: for localhost and nothing else.
    """
    made = Certificates(tmp_path_factory.mktemp("certs"))
    for name, hosts in [("loopback", []), ("name-only", ["--host", "localhost"])]:
        make_certificate(made.key(name), made.cert(name), *hosts)
    return made


@dataclass(frozen=True)
class Listeners:
    """The server's ports: plain TCP, TLS with each certificate."""

    plain: int
    loopback: int
    name_only: int


@pytest.fixture
def listeners(tmp_path: Path, certificates: Certificates) -> Iterator[Listeners]:
    """
    A real C{twistd chatroute} listening on 127.0.0.1 on a plain TCP port and
    two TLS ports, one with each certificate; stopped after the test, which
    fails if the server logged a traceback.
    """
    directory = tmp_path / "server"
    directory.mkdir()
    options = []
    for name in ("loopback", "name-only"):
        description = listen_description(
            certificates.key(name), certificates.cert(name), 0, interface="127.0.0.1"
        )
        options += ["--listen", description]
    running = ServerProcess(directory, *options)
    try:
        loopback, name_only = (int(m.group(1)) for m in running.wait_for_log(TLS_STARTED, 2))
        yield Listeners(running.port, loopback, name_only)
    finally:
        status = running.stop()
    log = running.log()
    assert status in (0, -signal.SIGTERM), f"twistd exited with {status}; its log:\n{log}"
    assert "Traceback" not in log, f"the server logged an error:\n{log}"


@pytest.fixture
def plain(listeners: Listeners) -> Iterator[Callable[[str], ChatConnection]]:
    """Open raw plain-TCP connections, like C{nc}: C{plain(name)}; closed after the test."""
    opened: list[ChatConnection] = []

    def open_connection(name: str) -> ChatConnection:
        opened.append(ChatConnection(listeners.plain, name))
        return opened[-1]

    yield open_connection
    for connection in opened:
        connection.close()


def test_tls_client_and_plain_client_chat_across_listeners(
    listeners, certificates, plain, spawn_client
):
    bob = plain("bob")
    bob.register("bob")
    alice = spawn_client(
        "alice",
        *("--tls", "--cafile", str(certificates.cert("loopback"))),
        *("--host", "localhost", "--port", str(listeners.loopback), "--nick", "alice"),
    )
    alice.stdout.expect_match(GREETING)
    alice.stdout.expect("* registered as alice")

    alice.send("@bob:over TLS\n")
    bob.expect("<alice> over TLS")
    bob.send("@alice:over plain TCP")
    alice.stdout.expect("<bob> over plain TCP")

    alice.close_input()
    assert alice.wait() == 0, alice.stderr()
    assert alice.stdout.read_until_eof() == ["* bye"]
    assert alice.stderr() == ""


def refused(client: ClientProcess) -> str:
    """What C{client} said on standard error, once it has exited with 1, having shown nothing."""
    assert client.wait() == 1, client.stderr()
    assert client.stdout.read_until_eof() == []
    return client.stderr()


def test_client_refuses_a_self_signed_certificate_without_cafile(listeners, spawn_client):
    port = listeners.loopback
    client = spawn_client("alice", "--tls", "--host", "localhost", "--port", str(port))
    assert refused(client) == (
        f"cannot connect to localhost:{port}: TLS certificate not trusted: certificate "
        "verify failed (checked against this system's certificate authorities; for a "
        "self-signed certificate use --cafile)\n"
    )


def test_client_refuses_a_certificate_not_valid_for_the_host(listeners, certificates, spawn_client):
    port = listeners.name_only
    client = spawn_client(
        "alice",
        *("--tls", "--cafile", str(certificates.cert("name-only"))),
        *("--host", "127.0.0.1", "--port", str(port)),
    )
    assert refused(client) == (
        f"cannot connect to 127.0.0.1:{port}: TLS certificate not trusted: "
        "it is not valid for 127.0.0.1\n"
    )


def test_client_refuses_a_certificate_signed_by_another(listeners, certificates, spawn_client):
    port = listeners.loopback
    cafile = str(certificates.cert("name-only"))
    client = spawn_client("alice", "--cafile", cafile, "--port", str(port))
    assert refused(client) == (
        f"cannot connect to localhost:{port}: TLS certificate not trusted: certificate "
        f"verify failed (checked against {cafile})\n"
    )


def test_tls_client_on_the_plain_port(listeners, certificates, spawn_client):
    port = listeners.plain
    cafile = str(certificates.cert("loopback"))
    client = spawn_client("alice", "--cafile", cafile, "--host", "127.0.0.1", "--port", str(port))
    assert refused(client).startswith(f"cannot connect to 127.0.0.1:{port}: TLS handshake failed: ")


def test_python_ssl_socket(listeners, certificates, plain):
    context = ssl.create_default_context(cafile=certificates.cert("loopback"))
    # As Python 3.13 does by default: the certificate is well-formed, not just accepted.
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    carol = ChatConnection(listeners.loopback, "carol", tls=context, server_hostname="127.0.0.1")
    try:
        carol.register("carol")
        bob = plain("bob")
        bob.register("bob")
        carol.send("@bob:from ssl")
        bob.expect("<carol> from ssl")
        bob.send("@carol:to ssl")
        carol.expect("<bob> to ssl")
        carol.send("/quit")
        carol.expect("* bye")
        carol.expect_eof()
    finally:
        carol.close()


def test_quit_after_a_login_over_tls_frees_the_name(listeners, certificates, plain):
    """A /quit right behind a line that waits for the database closes the session at once."""
    context = ssl.create_default_context(cafile=certificates.cert("loopback"))
    dave = ChatConnection(listeners.loopback, "dave", tls=context, server_hostname="127.0.0.1")
    try:
        dave.register("dave")
        dave.send("/register secret123")
        dave.send("/quit")
        dave.expect("* dave is now a registered account; log in with #dave <password>")
        dave.expect("* bye")
        bob = plain("bob")
        bob.register("bob")
        bob.sync(["bob"])
        bob.send("@dave:later")
        bob.expect("* dave is offline; message stored for delivery at login")
    finally:
        dave.close()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command")
def test_openssl_s_client(listeners, certificates):
    """The README's TLS equivalent of C{nc}."""
    result = subprocess.run(
        [
            *("openssl", "s_client", "-connect", f"127.0.0.1:{listeners.loopback}", "-quiet"),
            *("-CAfile", str(certificates.cert("loopback")), "-verify_return_error"),
        ],
        input=b"#dave\n/quit\n",
        capture_output=True,
        timeout=READ_TIMEOUT,
    )
    lines = result.stdout.decode().splitlines()
    assert lines[1:] == ["* registered as dave", "* bye"], result.stderr


def test_two_servers_with_reuse_port_share_a_tls_port(tmp_path, certificates):
    directory = tmp_path / "servers"
    directory.mkdir()
    key, cert = certificates.key("loopback"), certificates.cert("loopback")
    tls = listen_description(key, cert, 0, interface="127.0.0.1")
    first = ServerProcess(directory, "--reuse-port", "--listen", tls, log_name="first.log")
    servers = [first]
    try:
        (started,) = first.wait_for_log(TLS_STARTED)
        port = int(started.group(1))
        shared = listen_description(key, cert, port, interface="127.0.0.1")
        servers.append(
            ServerProcess(
                directory,
                "--reuse-port",
                "--listen",
                shared,
                log_name="second.log",
                port=first.port,
            )
        )
        servers[1].wait_for_log(TLS_STARTED)
        context = ssl.create_default_context(cafile=cert)
        # The kernel spreads connections by a hash of their addresses; 24 reach both
        # but for a chance of 2 in 16 million.
        for n in range(24):
            client = ChatConnection(port, f"c{n}", tls=context, server_hostname="127.0.0.1")
            client.register(f"c{n}")
            client.close()
        for server in servers:
            server.wait_for_log(re.compile(r"\(c\d+\) disconnected"))
    finally:
        for server in servers:
            status = server.stop()
            assert status in (0, -signal.SIGTERM), f"twistd exited with {status}:\n{server.log()}"
            assert "Traceback" not in server.log(), server.log()
