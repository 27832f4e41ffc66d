"""
chatroute's controller for irctest, the IRC conformance suite.

irctest imports it by module name (C{--controller
tests.irctest.chatroute_controller}, with this checkout on C{PYTHONPATH});
L{get_irctest_controller_class} is its entry point. It starts
C{twistd -n --pidfile= chatroute --listen-irc tcp:PORT:interface=HOST --db :memory:}
with the limits a test suite trips lifted: no flood limit (irctest sends
bursts), no per-address connection limit (every client is on loopback), no
history replayed on JOIN (rooms keep history between tests on one server).
A test class with a server password gets C{--server-password-file}.
The line protocol's listener, which chatroute always has, is put on an
ephemeral loopback port so that it clashes with nothing.

Accounts for the SASL tests are made over IRC itself, with
C{REGISTER * * PASSWORD} (chatroute's account is the nickname).
L{tests.irctest.run} runs the suite on the modules chatroute passes.
"""

import socket
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

from irctest.basecontrollers import BaseServerController, DirectoryBasedController
from irctest.runner import NotImplementedByController

TWISTD = Path(sys.executable).parent / "twistd"
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
        self.hostname, self.port = hostname, port
        extra: list[str] = []
        if password is not None:
            # With a server password, PASS gives it (accounts log in with SASL).
            password_file = Path(self.directory) / "server-password"
            password_file.write_text(password + "\n")
            extra = ["--server-password-file", str(password_file)]
        endpoint = f"tcp:{port}:interface={hostname}"
        if ssl:
            self.gen_ssl()
            keys = f"privateKey={self.key_path}:certKey={self.pem_path}"
            endpoint = f"ssl:{port}:interface={hostname}:{keys}"
        self.proc = self.execute(
            [
                str(TWISTD),
                "--nodaemon",
                "--pidfile=",
                "chatroute",
                "--listen-irc",
                endpoint,
                "--listen",
                "tcp:0:interface=127.0.0.1",
                "--db",
                ":memory:",
                "--irc-server-name",
                "My.Little.Server",
                *LIFTED_LIMITS,
                *extra,
            ],
            cwd=self.directory,
        )

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
    def _read_until(sock: socket.socket, marker: bytes) -> bytes:
        data = b""
        deadline = time.monotonic() + 10
        while marker not in data:
            if time.monotonic() > deadline:
                raise AssertionError(f"no {marker!r} from the server: {data!r}")
            chunk = sock.recv(4096)
            if not chunk:
                raise AssertionError(f"the server closed before {marker!r}: {data!r}")
            data += chunk
        return data


def get_irctest_controller_class() -> type[ChatrouteController]:
    return ChatrouteController
