"""
A client that never reads, while others send it megabytes: the server's
memory stays bounded, the client is dropped, and everyone else keeps chatting.
"""

import socket
import time

import pytest

from .support import ChatConnection, ServerProcess

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
FLOOD_LINE = "@victim:" + "x" * 3900


def rss_mib(server: ServerProcess) -> float:
    with open(f"/proc/{server.process.pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def lines_until(connection: ChatConnection, last: str) -> list[str]:
    """Read lines up to and including C{last}."""
    lines = [connection.read_line()]
    while lines[-1] != last:
        lines.append(connection.read_line())
    return lines


def never_reading(port: int) -> socket.socket:
    """
    A client with a small receive buffer that registers, reads until the
    server confirms it, and then never reads again.
    """
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"#victim\n")
    received = b""
    while b"* registered as victim\r\n" not in received:
        data = sock.recv(4096)
        assert data, received
        received += data
    return sock


@pytest.mark.server_options("--flood-rate", "0")  # the flooders flood on purpose
def test_a_client_that_never_reads_is_dropped_and_others_keep_chatting(server, connect):
    alice, bob = connect("alice"), connect("bob")
    alice.register("alice")
    bob.register("bob")
    flooders = [connect(f"flooder{n}") for n in range(2)]
    for n, flooder in enumerate(flooders):
        flooder.register(f"flooder{n}")
    victim = never_reading(server.port)
    bob.sync(["alice", "bob", "flooder0", "flooder1", "victim"])
    before = rss_mib(server)

    latencies = []
    sent = 0
    for probe in range(40):  # 40 x 2 x 400 KB = 32 MB aimed at the victim
        for flooder in flooders:
            flooder.send_bytes(((FLOOD_LINE + "\n") * 100).encode())
            sent += 100 * len(FLOOD_LINE)
        started = time.monotonic()
        alice.send(f"@bob:probe {probe}")
        bob.expect(f"<alice> probe {probe}")
        latencies.append(time.monotonic() - started)
    peak = rss_mib(server)

    assert sent > 29 * MIB
    assert peak - before < 12, f"server RSS grew from {before:.1f} to {peak:.1f} MiB"
    latencies.sort()
    assert latencies[len(latencies) // 2] < 0.25, latencies
    bob.sync(["alice", "bob", "flooder0", "flooder1"])
    for flooder in flooders:
        flooder.send("/ping")
        lines = lines_until(flooder, "* pong")
        assert any("victim" in line for line in lines), lines
        assert set(lines) <= {
            "! victim is not reading messages and was disconnected; not delivered",
            "! no such user: victim",
            "* pong",
        }, set(lines)
    assert "it is not reading" in server.log()
    victim.close()
