"""
chatroute's controller for irctest, the IRC conformance suite.

irctest imports it by module name (C{--controller
tests.irctest.chatroute_controller}, with this checkout on C{PYTHONPATH});
L{get_irctest_controller_class} is its entry point. It starts
C{twistd -n --pidfile= chatroute --listen-irc tcp:PORT:interface=127.0.0.1 --db :memory:}
with the limits a test suite trips lifted: no flood limit (irctest sends
bursts), no per-address connection limit (every client is on loopback), no
history replayed on JOIN (rooms keep history between tests on one server).
A test class with a server password gets C{--server-password-file}.

irctest names a port it found free, and its clients connect to it (at the
address it names, C{0.0.0.0}, which is this machine's loopback). Between
that and twistd listening, which takes a second or more on a loaded
machine, anything else could take the port: the controller holds it
meanwhile (L{_reserve}). The server is ready when its own log says it
listens there and it answers there, not when something answers on
C{localhost} (irctest's own check, which may reach another server on
C{::1}). The line protocol's listener, which chatroute always has, is a
UNIX socket in the server's directory, so that it takes no TCP port at all.

Accounts for the SASL tests are made over IRC itself, with
C{REGISTER * * PASSWORD} (chatroute's account is the nickname).
L{tests.irctest.run} runs the suite on the modules chatroute passes.
"""

import socket
import ssl as tls
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

from irctest.basecontrollers import BaseServerController, DirectoryBasedController, ProcessStopped
from irctest.runner import NotImplementedByController

TWISTD = Path(sys.executable).parent / "twistd"
LOOPBACK = "127.0.0.1"
START_TIMEOUT = 60.0
"""Seconds twistd may take to listen and answer (irctest waits as long for a port)."""
_POLL = 0.05
LIFTED_LIMITS = (
    "--flood-rate",
    "0",
    "--max-per-address",
    "0",
    "--history",
    "0",
)
"""Limits irctest would trip, and what they are set to."""


class ChatrouteController(BaseServerController, DirectoryBasedController):
    software_name = "chatroute"
    supported_sasl_mechanisms: ClassVar[set[str]] = {"PLAIN"}
    supports_sts = False
    isupport: ClassVar[dict[str, str | None]] = {
        "CASEMAPPING": "ascii",
        "CHANTYPES": "#",
        "NICKLEN": "32",
        "CHANNELLEN": "33",
        "PREFIX": "(ov)@+",
        "UTF8ONLY": None,
        "WHOX": None,
    }
    """What chatroute's 005 must say (docs/protocol.md, IRC: Registration)."""
    _reservation: socket.socket | None = None
    _tls = False
    _listening = ""
    _log: Path | None = None

    def run(
        self,
        hostname: str,
        port: int,
        *,
        password: str | None,
        ssl: bool,
        run_services: bool,
        faketime: str | None,
        websocket_hostname: str | None,
        websocket_port: int | None,
    ) -> None:
        if websocket_hostname is not None or websocket_port is not None:
            raise NotImplementedByController("Websocket")
        assert self.proc is None
        self.create_config()
        assert self.directory is not None
        directory = Path(self.directory)
        self.hostname, self.port = hostname, port
        self._release()
        self._reservation = _reserve(port)
        self.port_open = False
        self._tls = ssl
        extra: list[str] = []
        if password is not None:
            # With a server password, PASS gives it (accounts log in with SASL).
            password_file = directory / "server-password"
            password_file.write_text(password + "\n")
            extra = ["--server-password-file", str(password_file)]
        endpoint = f"tcp:{port}:interface={LOOPBACK}"
        if ssl:
            self.gen_ssl()
            keys = f"privateKey={self.key_path}:certKey={self.pem_path}"
            endpoint = f"ssl:{port}:interface={LOOPBACK}:{keys}"
        self._listening = f"chatroute listening on {endpoint}"
        self._log = directory / "twistd.log"
        self.proc = self.execute(
            [
                str(TWISTD),
                "--nodaemon",
                "--pidfile=",
                f"--logfile={self._log}",
                "chatroute",
                "--listen-irc",
                endpoint,
                "--listen",
                f"unix:{directory / 'line.sock'}",
                "--db",
                ":memory:",
                "--irc-server-name",
                "My.Little.Server",
                *LIFTED_LIMITS,
                *extra,
            ],
            cwd=self.directory,
        )

    def wait_for_port(self) -> None:
        """
        Wait until this server listens on its port and answers there (a
        C{QUIT} gets its C{ERROR}), as irctest does before each client.

        @raise ProcessStopped: twistd exited (its log says why).
        @raise AssertionError: it did not answer within L{START_TIMEOUT}.
        """
        if self.port_open:
            return
        deadline = time.monotonic() + START_TIMEOUT
        while self._listening not in self._read_log():
            self._check_running()
            if time.monotonic() > deadline:
                raise AssertionError(f"twistd did not listen in time:\n{self._read_log()}")
            time.sleep(_POLL)
        self._release()
        while not self._answers(deadline):
            self._check_running()
            if time.monotonic() > deadline:
                raise AssertionError(f"twistd did not answer in time:\n{self._read_log()}")
            time.sleep(_POLL)
        self.port_open = True

    def _answers(self, deadline: float) -> bool:
        """Whether the server takes a connection and answers its C{QUIT} with C{ERROR}."""
        try:
            with socket.create_connection((LOOPBACK, self.port), timeout=1.0) as raw:
                sock = raw
                if self._tls:
                    context = tls.create_default_context()
                    context.check_hostname = False
                    context.verify_mode = tls.CERT_NONE
                    sock = context.wrap_socket(raw)
                sock.sendall(b"QUIT :chkport\r\n")
                self._read_until(sock, b"ERROR", deadline)
        except (OSError, AssertionError):
            return False
        return True

    def _check_running(self) -> None:
        assert self.proc is not None
        status = self.proc.poll()
        if status is not None:
            raise ProcessStopped(f"twistd exited with {status}:\n{self._read_log()}")

    def _read_log(self) -> str:
        try:
            return "" if self._log is None else self._log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _release(self) -> None:
        """Let the port go: twistd has it (or is stopped)."""
        reservation, self._reservation = self._reservation, None
        if reservation is not None:
            reservation.close()

    def kill_proc(self) -> None:
        super().kill_proc()
        self._release()

    def terminate(self) -> None:
        super().terminate()
        self._release()

    def registerUser(self, case: Any, username: str, password: str | None = None) -> None:
        """Make the account C{username} over IRC: register the nickname, then C{REGISTER}."""
        if password is None:
            raise NotImplementedByController("accounts without a password")
        self.wait_for_port()
        with socket.create_connection((self.hostname, self.port), timeout=10) as sock:
            sock.sendall(f"NICK {username}\r\nUSER {username} 0 * :{username}\r\n".encode())
            self._read_until(sock, b" 001 ")
            sock.sendall(f"REGISTER * * :{password}\r\n".encode())
            reply = self._read_until(sock, b"REGISTER ")
            if b"REGISTER SUCCESS" not in reply:
                raise AssertionError(f"could not register {username}: {reply!r}")
            sock.sendall(b"QUIT\r\n")

    @staticmethod
    def _read_until(sock: socket.socket, marker: bytes, deadline: float | None = None) -> bytes:
        data = b""
        deadline = deadline or time.monotonic() + 10
        while marker not in data:
            if time.monotonic() > deadline:
                raise AssertionError(f"no {marker!r} from the server: {data!r}")
            chunk = sock.recv(4096)
            if not chunk:
                raise AssertionError(f"the server closed before {marker!r}: {data!r}")
            data += chunk
        return data


def _reserve(port: int) -> socket.socket:
    """
    Hold C{port} on the loopback until twistd listens on it: while a socket
    is bound to it (not listening), the system hands it to no one else (a
    bind to port 0, an outgoing connection) and a bind without
    C{SO_REUSEADDR} fails, while twistd, which binds with C{SO_REUSEADDR}
    as this one does, may still listen there.
    """
    reservation = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    reservation.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        reservation.bind((LOOPBACK, port))
    except OSError as error:
        reservation.close()
        raise AssertionError(f"port {port}, which irctest found free, was taken: {error}") from None
    return reservation


def get_irctest_controller_class() -> type[ChatrouteController]:
    return ChatrouteController
