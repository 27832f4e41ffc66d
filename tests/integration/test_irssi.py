"""
A real IRC client, Debian's irssi, in tmux against the real server's IRC
listener, beside a line-protocol user: log in, join a room, talk, get a DM;
and over TLS, checking a certificate made by C{chatroute-makecert}.
"""

import os
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chatroute.certs import listen_description

from .conftest import _check_stopped
from .support import (
    IRC_STARTED,
    READ_TIMEOUT,
    ChatConnection,
    ServerProcess,
    make_account,
    make_certificate,
)

IRC_TLS_STARTED = re.compile(r"IRCServerFactory \(TLS\) starting on (\d+)")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.server_options("--listen-irc", "tcp:0:interface=127.0.0.1"),
    pytest.mark.skipif(
        shutil.which("irssi") is None or shutil.which("tmux") is None,
        reason="irssi or tmux is missing and could not be installed (scripts/setup-test-packages)",
    ),
]


class Irssi:
    """irssi in a tmux session of a tmux server of its own, read through capture-pane."""

    def __init__(self, home: Path, *arguments: str) -> None:
        self._tmux = ["tmux", "-L", f"chatroute-test-{os.getpid()}"]
        home.mkdir()
        command = shlex.join(["irssi", f"--home={home}", *arguments])
        subprocess.run(
            [*self._tmux, "new-session", "-d", "-x", "120", "-y", "40", "-s", "irssi", command],
            check=True,
            env=dict(os.environ, TERM="tmux-256color"),
            timeout=READ_TIMEOUT,
        )

    def screen(self) -> str:
        """What the window shows now."""
        return subprocess.run(
            [*self._tmux, "capture-pane", "-p", "-t", "irssi"],
            check=True,
            capture_output=True,
            text=True,
            timeout=READ_TIMEOUT,
        ).stdout

    def wait_for(self, text: str) -> None:
        """Poll the window until it shows C{text}; fail after the read timeout."""
        deadline = time.monotonic() + READ_TIMEOUT
        while text not in (shown := self.screen()):
            if time.monotonic() > deadline:
                pytest.fail(f"irssi never showed {text!r}; it shows:\n{shown}")
            time.sleep(0.1)

    def type(self, line: str) -> None:
        """Type C{line} and press Enter."""
        subprocess.run(
            [*self._tmux, "send-keys", "-t", "irssi", "-l", line], check=True, timeout=READ_TIMEOUT
        )
        subprocess.run(
            [*self._tmux, "send-keys", "-t", "irssi", "Enter"], check=True, timeout=READ_TIMEOUT
        )

    def close(self) -> None:
        """End irssi and its tmux server."""
        subprocess.run([*self._tmux, "kill-server"], check=False, timeout=READ_TIMEOUT)


@pytest.fixture
def irssi(server: ServerProcess, tmp_path: Path) -> Iterator[Irssi]:
    """irssi logged in to the account ivy (made over the line protocol) on the IRC port."""
    make_account(server.port, "ivy", "ivy-passphrase")
    port = int(server.wait_for_log(IRC_STARTED)[0].group(1))
    # irssi sends its -w as a PASS of one word.
    arguments = ("-n", "ivy", "-c", "127.0.0.1", "-p", str(port), "-w", "ivy-passphrase")
    client = Irssi(tmp_path / "irssi", *arguments)
    try:
        yield client
    finally:
        client.close()


def test_irssi_logs_in_joins_talks_and_gets_a_direct_message(irssi, connect):
    irssi.wait_for("You are now logged in as ivy")
    irssi.type("/join #lobby")
    irssi.wait_for("ivy [ivy@chatroute] has joined #lobby")

    lena = connect("lena")
    lena.register("lena")
    lena.send("/join #lobby")
    lena.expect("* lena joined #lobby")
    lena.expect("* #lobby (2): @ivy, lena")
    irssi.wait_for("lena [lena@chatroute] has joined #lobby")

    irssi.type("hello from irssi")
    lena.expect("#lobby <ivy> hello from irssi")
    lena.send("@#lobby:hi from the line")
    lena.expect("#lobby <lena> hi from the line")
    irssi.wait_for("< lena> hi from the line")
    lena.send("@ivy:a direct one")
    irssi.type("/window 3")
    irssi.wait_for("<lena> a direct one")
    irssi.type("/msg lena and back")
    lena.expect("<ivy> and back")


def test_irssi_over_tls_checks_the_certificate_and_chats(tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    make_certificate(key, cert)
    directory = tmp_path / "server"
    directory.mkdir()
    tls = listen_description(key, cert, 0, interface="127.0.0.1")
    running = ServerProcess(directory, "--listen-irc", tls)
    client = None
    try:
        port = int(running.wait_for_log(IRC_TLS_STARTED)[0].group(1))
        make_account(running.port, "ivy", "ivy-passphrase")
        client = Irssi(tmp_path / "irssi", "-n", "ivy")
        # irssi matches the certificate's DNS names only, not its IP addresses;
        # -4: localhost's IPv4 address, where the server listens.
        client.type(
            f"/connect -4 -tls -tls_verify -tls_cafile {cert} localhost {port} ivy-passphrase ivy"
        )
        client.wait_for("You are now logged in as ivy")
        client.type("/join #secure")
        client.wait_for("ivy [ivy@chatroute] has joined #secure")
        lena = ChatConnection(running.port, "lena")
        lena.register("lena")
        lena.send("/join #secure")
        lena.expect("* lena joined #secure")
        client.type("hello over TLS")
        lena.expect("* #secure (2): @ivy, lena")
        lena.expect("#secure <ivy> hello over TLS")
        lena.send("@#secure:and back")
        client.wait_for("< lena> and back")
        lena.close()
    finally:
        if client is not None:
            client.close()
        _check_stopped(running)
