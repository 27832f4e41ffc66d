"""
The line protocol's hot path in one process, without sockets: the Python cost
per delivered message, for direct messages read one line at a time
(trickle) and 50 lines a read (batch), for a room message to 200
members (fan-out), and for direct messages to users of another node, read
one and 50 lines at a time (crossing: both nodes' backplanes, with Redis
faked by handing one node's published batch to the other). The system
calls that bench/run also counts are left out, so changes in the Python
code show clearly.

    .venv/bin/python -m bench.hotpath

To compare two checkouts, run each one's in turn, several times: the figures
are CPU time (process_time) of one process, but the machine is shared.
"""

import time
from collections.abc import Callable

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from chatroute.backplane.connection import RedisAddress
from chatroute.backplane.redis import RedisBackplane
from chatroute.core.limits import Limits
from chatroute.core.router import Router
from chatroute.core.session import Hub
from chatroute.frontends.line import ChatProtocol, ChatServerFactory
from chatroute.storage.memory import MemoryStorage

PAIRS = 50
MEMBERS = 200
TEXT = b"hello there, how are you"

Connection = tuple[ChatProtocol, StringTransport]


class Chat:
    """One server's line front end on in-memory transports: DM pairs and a room."""

    def __init__(self) -> None:
        clock = Clock()
        clock.advance(1.8e9)
        # Production defaults (the idle timeout on), but for the limits a bench must lift.
        limits = Limits(flood_rate=0, max_per_address=0, max_connections=0)
        # Accounts are never used here.
        self._factory = ChatServerFactory(
            Hub(Router(MemoryStorage(), clock), None, clock, limits)  # type: ignore[arg-type]
        )
        self._port = 10_000
        self.senders = [self._connect(b"#a%d" % n) for n in range(PAIRS)]
        self.receivers = [self._connect(b"#b%d" % n) for n in range(PAIRS)]
        self.members = [self._connect(b"#r%d\n/join #lobby" % n) for n in range(MEMBERS)]
        self.clear()

    def _connect(self, lines: bytes) -> Connection:
        self._port += 1
        protocol = self._factory.buildProtocol(None)
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", self._port))
        protocol.makeConnection(transport)
        protocol.dataReceived(lines + b"\n")
        return protocol, transport

    def clear(self) -> None:
        """Forget what was written to every client."""
        for _, transport in self.senders + self.receivers + self.members:
            transport.clear()


def trickle(chat: Chat, rounds: int) -> int:
    """Each sender sends one line per read; the number of deliveries."""
    lines = [(protocol, b"@b%d:%s\n" % (n, TEXT)) for n, (protocol, _) in enumerate(chat.senders)]
    for _ in range(rounds):
        for protocol, line in lines:
            protocol.dataReceived(line)
        chat.clear()
    return rounds * PAIRS


def batch(chat: Chat, rounds: int) -> int:
    """Each sender sends 50 lines per read; the number of deliveries."""
    chunks = [
        (protocol, b"@b%d:%s\n" % (n, TEXT) * 50) for n, (protocol, _) in enumerate(chat.senders)
    ]
    for _ in range(rounds):
        for protocol, chunk in chunks:
            protocol.dataReceived(chunk)
        chat.clear()
    return rounds * PAIRS * 50


def fanout(chat: Chat, rounds: int) -> int:
    """One member sends room messages; the number of deliveries."""
    protocol = chat.members[0][0]
    for _ in range(rounds):
        protocol.dataReceived(b"@#lobby:%s\n" % TEXT)
        chat.clear()
    return rounds * MEMBERS


class _Published:
    """Stands in for a backplane's link to Redis: keeps what it publishes."""

    def __init__(self) -> None:
        self.payloads: list[tuple[str, str]] = []

    def execute(self, command: str, channel: str, payload: str) -> "Deferred[int]":
        self.payloads.append((channel, payload))
        return succeed(1)


class Nodes:
    """Two nodes' line front ends and backplanes; senders on one, receivers on the other."""

    def __init__(self) -> None:
        self.clock = clock = Clock()
        clock.advance(1.8e9)
        limits = Limits(flood_rate=0, max_per_address=0, max_connections=0, idle_timeout=0)
        self.sending, self.receiving = (RedisBackplane(clock, RedisAddress("-")) for _ in "ab")
        self.link = _Published()
        self.sending._commands = self.link  # type: ignore[assignment]
        factories = []
        for backplane in (self.sending, self.receiving):
            hub = Hub(Router(MemoryStorage(), clock, backplane=backplane), None, clock, limits)  # type: ignore[arg-type]
            backplane.outbox = hub.outbox
            factories.append(ChatServerFactory(hub))
        self._port = 10_000
        self.senders = [self._connect(factories[0], self.sending, f"a{n}") for n in range(PAIRS)]
        self.receivers = [
            self._connect(factories[1], self.receiving, f"b{n}") for n in range(PAIRS)
        ]
        router = self.sending._router
        assert router is not None
        for n in range(PAIRS):  # the receivers, as the sending node knows them
            presence = self.sending._remote_presence(self.receiving.node, f"b.{n}")
            router.apply_claim(presence, f"b{n}", False)

    def _connect(
        self, factory: ChatServerFactory, backplane: RedisBackplane, nick: str
    ) -> Connection:
        self._port += 1
        protocol = factory.buildProtocol(None)
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", self._port))
        protocol.makeConnection(transport)
        presence = protocol._session._presence  # type: ignore[union-attr]
        assert presence is not None and backplane._router is not None
        backplane._sid(presence)
        backplane._router.apply_claim(presence, nick, False)
        return protocol, transport

    def crossing(self, rounds: int, per_read: int) -> int:
        """Each sender sends C{per_read} lines a read to its receiver on the other node."""
        chunks = [
            (protocol, b"@b%d:%s\n" % (n, TEXT) * per_read)
            for n, (protocol, _) in enumerate(self.senders)
        ]
        for _ in range(rounds):
            for protocol, chunk in chunks:
                protocol.dataReceived(chunk)
            self.clock.advance(0)  # the reactor turn ends: the batch is published
            for channel, payload in self.link.payloads:
                self.receiving._message(channel, payload)
            self.link.payloads.clear()
            for _, transport in self.receivers:
                transport.clear()
        return rounds * PAIRS * per_read


def crossing_trickle(chat: Chat, rounds: int) -> int:
    """One line a read, to a user of another node; the number of deliveries."""
    return _NODES.crossing(rounds, 1)


def crossing_batch(chat: Chat, rounds: int) -> int:
    """50 lines a read, to a user of another node; the number of deliveries."""
    return _NODES.crossing(rounds, 50)


_NODES: Nodes

SCENARIOS: list[tuple[str, Callable[[Chat, int], int], int]] = [
    ("trickle", trickle, 400),
    ("batch", batch, 20),
    ("fan-out", fanout, 200),
    ("crossing trickle", crossing_trickle, 400),
    ("crossing batch", crossing_batch, 20),
]


def main() -> None:
    """Print the CPU microseconds per delivered message of each scenario."""
    global _NODES
    chat = Chat()
    _NODES = Nodes()
    for name, scenario, rounds in SCENARIOS:
        scenario(chat, rounds // 10)  # warm up
        start = time.process_time()
        deliveries = scenario(chat, rounds)
        spent = time.process_time() - start
        print(f"{name:16} {spent / deliveries * 1e6:6.3f} us CPU per delivered message")


if __name__ == "__main__":
    main()
