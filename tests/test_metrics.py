"""
The server's metrics: the collector's figures over in-memory front ends, the
timing wrappers at the storage and backplane seams, and the page.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransportWithDisconnection
from twisted.logger import capturedLogs
from twisted.python.failure import Failure
from twisted.web.test.requesthelper import DummyRequest
from zope.interface import implementer
from zope.interface.verify import verifyObject

from chatroute.backplane.connection import RedisAddress
from chatroute.backplane.redis import RedisBackplane
from chatroute.core.directory import LocalDirectory, Presence
from chatroute.core.errors import NicknameTaken
from chatroute.core.events import Notice, RoomMessage
from chatroute.core.interfaces import IBackplane, ILink, IStorage
from chatroute.core.limits import Limits
from chatroute.core.router import Router
from chatroute.core.session import ConnectionSession, Hub, Peer
from chatroute.frontends.irc import IRCServerFactory
from chatroute.frontends.line import ChatServerFactory
from chatroute.frontends.syntax import LineFormat
from chatroute.metrics import (
    BACKPLANE_OPERATIONS,
    STORAGE_OPERATIONS,
    MetricsSite,
    ServerMetrics,
)
from chatroute.storage.memory import MemoryStorage

from .conftest import settled

NO_LIMITS = Limits(0, 1, 0, 0, 0, 0, 0)


class Client:
    """One in-memory connection to a front end's factory."""

    def __init__(self, factory: Any, port: int) -> None:
        address = IPv4Address("TCP", "127.0.0.1", port)
        self.protocol = factory.buildProtocol(address)
        self.transport = StringTransportWithDisconnection(peerAddress=address)
        self.transport.protocol = self.protocol
        self.protocol.makeConnection(self.transport)

    def send(self, *lines: str) -> list[str]:
        """Send C{lines} in one chunk; the lines written back since the last call."""
        self.protocol.dataReceived("".join(f"{line}\r\n" for line in lines).encode())
        return self.lines()

    def lines(self) -> list[str]:
        data = self.transport.value()
        self.transport.clear()
        return data.decode().split("\r\n")[:-1]

    def hang_up(self) -> None:
        self.transport.loseConnection()


@implementer(ILink)
class WebLink:
    """Stands in for a WebSocket: what the session writes, kept as it comes."""

    frontend = "web"

    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def write_all(self, items: list[bytes]) -> None:
        self.written.extend(items)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


class Server:
    """A hub with line and IRC front ends, and its metrics, on in-memory transports."""

    def __init__(self, storage: IStorage | None = None, limits: Limits = NO_LIMITS) -> None:
        self.clock = Clock()
        self.metrics = ServerMetrics(self.clock, process=False)
        self.storage = self.metrics.timed_storage(storage or MemoryStorage())
        self.router = Router(self.storage, self.clock)
        # No accounts: nothing here logs in with a password.
        self.hub = Hub(self.router, None, self.clock, limits, 64)  # type: ignore[arg-type]
        self.metrics.watch(self.hub)
        self.line = ChatServerFactory(self.hub)
        self.irc = IRCServerFactory(self.hub)
        self._ports = iter(range(40000, 41000))

    def value(self, name: str, **labels: str) -> float | None:
        """A sample's value as a scrape would show it now."""
        return self.metrics.registry.get_sample_value(name, labels)

    def connect(self, nick: str | None = None) -> Client:
        client = Client(self.line, next(self._ports))
        if nick is not None:
            assert client.send(f"#{nick}")[-1] == f"* registered as {nick}"
        client.lines()
        return client

    def connect_irc(self, nick: str) -> Client:
        client = Client(self.irc, next(self._ports))
        assert client.send(f"NICK {nick}", f"USER {nick} 0 * :{nick}")
        return client

    def connect_web(self, nick: str) -> ConnectionSession:
        session = ConnectionSession(
            self.hub, WebLink(), LineFormat(), Peer("127.0.0.1", "127.0.0.1:1", True)
        )
        assert session.open()
        session.lines_received([f"#{nick}".encode()])
        return session


@pytest.fixture
def server() -> Server:
    return Server()


def test_each_server_has_a_registry_of_its_own():
    first, second = Server(), Server()
    first.connect("alice")
    assert first.value("chatroute_users", frontend="line") == 1
    assert second.value("chatroute_users", frontend="line") == 0
    assert REGISTRY.get_sample_value("chatroute_users", {"frontend": "line"}) is None


def test_process_metrics_are_included_unless_left_out():
    registry = ServerMetrics(Clock()).registry
    assert registry.get_sample_value("process_resident_memory_bytes") > 0
    assert Server().value("process_resident_memory_bytes") is None


def test_connections_and_users_by_front_end(server):
    alice = server.connect("alice")
    server.connect()
    server.connect_irc("bob")
    server.connect_web("carol")
    figures = {
        frontend: (
            server.value("chatroute_connections", frontend=frontend),
            server.value("chatroute_users", frontend=frontend),
        )
        for frontend in ("line", "irc", "web")
    }
    assert figures == {"line": (2, 1), "irc": (1, 1), "web": (1, 1)}
    assert server.value("chatroute_network_users") == 3
    alice.hang_up()
    assert server.value("chatroute_connections", frontend="line") == 1
    assert server.value("chatroute_users", frontend="line") == 0


def test_every_front_end_is_shown_with_none_connected(server):
    for frontend in ("line", "web", "irc"):
        assert server.value("chatroute_connections", frontend=frontend) == 0
        assert server.value("chatroute_users", frontend=frontend) == 0


def test_rooms(server):
    alice, bob = server.connect("alice"), server.connect("bob")
    alice.send("/join #a", "/join #b")
    bob.send("/join #a")
    assert server.value("chatroute_rooms") == 2
    alice.send("/leave #b")
    assert server.value("chatroute_rooms") == 1


def counts(server: Server) -> tuple[float | None, float | None]:
    return server.value("chatroute_messages_in_total"), server.value("chatroute_messages_out_total")


def test_greetings_and_registrations_are_messages(server):
    assert counts(server) == (0, 0)
    server.connect("alice")
    assert counts(server) == (1, 2), "the greeting out, #alice in, its answer out"


def test_lines_of_one_chunk_count_one_each_and_their_deliveries_too(server):
    alice, bob = server.connect("alice"), server.connect("bob")
    before = counts(server)
    assert alice.send("@bob:one", "@bob:two", "@bob:three") == []
    assert bob.lines() == ["<alice> one", "<alice> two", "<alice> three"]
    assert counts(server) == (before[0] + 3, before[1] + 3)


def test_a_room_message_is_one_in_and_one_out_for_each_member(server):
    people = [server.connect(nick) for nick in ("alice", "bob", "carol")]
    for person in people:
        person.send("/join #lobby")
    before = counts(server)
    people[0].send("@#lobby:hi all")
    assert counts(server) == (before[0] + 1, before[1] + 3)


def test_what_is_sent_outside_a_read_is_counted_too(server):
    server.connect("alice"), server.connect("bob")
    before = counts(server)
    server.router.close_all("the server is shutting down")
    assert counts(server) == (before[0], before[1] + 2)


def test_what_a_dropped_client_was_never_sent_is_not_counted(server):
    server.connect("alice")
    bob = server.connect("bob")
    session = bob.protocol._session
    before = counts(server)
    outbox = server.hub.outbox
    outbox.collecting = True
    session.deliver(Notice("one"))
    session.deliver(Notice("two"))
    session.not_reading(1000)
    outbox.flush()
    assert counts(server) == before
    assert not bob.transport.connected


def test_errors_by_kind(server):
    alice = server.connect("alice")
    assert alice.send("/bogus", "/bogus", "@nobody:hi")[0].startswith("! unknown command")
    alice.protocol.dataReceived(b"x" * 100)
    assert server.value("chatroute_errors_total", kind="UnknownCommand") == 2
    assert server.value("chatroute_errors_total", kind="NoSuchUser") == 1
    assert server.value("chatroute_errors_total", kind="LineTooLong") == 1
    assert server.value("chatroute_messages_in_total") == 5, "#alice, three lines, the long one"


def test_refused_connections_are_errors():
    server = Server(limits=Limits(0, 1, 0, 1, 0, 0, 0))
    server.connect("alice")
    before = counts(server)
    refused = server.connect()
    assert not refused.transport.connected
    assert server.value("chatroute_errors_total", kind="ServerFull") == 1
    assert counts(server) == (before[0], before[1] + 1)
    assert server.value("chatroute_connections", frontend="line") == 1


def test_a_failing_store_is_counted_told_and_survived():
    class BrokenDisk(MemoryStorage):
        broken = True

        def store_message(self, *args: Any, **kwargs: Any) -> Deferred[int]:
            if self.broken:
                return fail(sqlite3.OperationalError("disk I/O error"))
            return super().store_message(*args, **kwargs)

    disk = BrokenDisk()
    settled(disk.create_account("carol", "hash"))
    server = Server(disk)
    alice = server.connect("alice")
    with capturedLogs() as events:
        assert alice.send("@carol:are you there?") == [
            "! internal server error; the request was not completed"
        ]
    assert any(event.get("log_failure") for event in events), "logged with its traceback"
    assert server.value("chatroute_storage_failures_total", operation="store_message") == 1
    assert server.value("chatroute_errors_total", kind="InternalError") == 1
    disk.broken = False
    assert alice.send("@carol:now?") == ["* carol is offline; message stored for delivery at login"]
    assert server.value("chatroute_storage_seconds_count", operation="store_message") == 2


def test_backplane_links_and_step():
    metrics = ServerMetrics(Clock(), process=False)
    # Made, not started: it connects to nothing.
    backplane = RedisBackplane(reactor, RedisAddress("127.0.0.1", 1))
    server = Server()
    metrics.watch(server.hub, backplane)
    backplane.links["commands"].reconnects = 2
    registry = metrics.registry

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("chatroute_backplane_connected", link="commands") == 0
    assert value("chatroute_backplane_connected", link="events") == 0
    assert value("chatroute_backplane_reconnects_total", link="commands") == 2
    assert value("chatroute_backplane_reconnects_total", link="events") == 0
    assert value("chatroute_backplane_synced") == 0
    backplane.synced = True
    assert value("chatroute_backplane_synced") == 1


def test_no_backplane_metrics_without_one(server):
    assert server.value("chatroute_backplane_synced") is None


# The timing wrappers.


class Pending:
    """Stands in for a store or a backplane: every call returns a Deferred fired later."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.waiting: list[Deferred[Any]] = []
        self.directory = LocalDirectory()

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any) -> Deferred[Any]:
            self.calls.append((name, args))
            result: Deferred[Any] = Deferred()
            self.waiting.append(result)
            return result

        return call


STORAGE_CALLS = {
    "create_account": ("alice", "hash"),
    "get_account": ("alice",),
    "set_password_hash": ("alice", "hash"),
    "store_message": ("alice", "bob", "hi", 1.0, 10, False),
    "pending_messages": ("alice",),
    "delete_messages": ([1, 2],),
    "append_history": ("#lobby", "alice", "hi", 1.0, False),
    "recent_history": ("#lobby", 20),
}
PRESENCE = Presence(None)  # type: ignore[arg-type]
BACKPLANE_CALLS = {
    "claim": (PRESENCE, "alice", False, False),
    "set_away": (PRESENCE, "lunch"),
    "mark_account": (PRESENCE,),
    "join": (PRESENCE, "#lobby", 1.0),
    "leave": (PRESENCE, "#lobby", None),
    "say": (PRESENCE, RoomMessage("#lobby", "alice", "hi")),
    "set_topic": (PRESENCE, "#lobby", "news", 1.0),
    "set_operator": (PRESENCE, "#lobby", "bob", True),
    "kick": (PRESENCE, "#lobby", "bob", None),
    "set_ban": (PRESENCE, "#lobby", "bob", True),
    "set_voice": (PRESENCE, "#lobby", "bob", True),
    "set_room_mode": (PRESENCE, "#lobby", "moderated", True),
    "lock_mailbox": ("alice",),
}
# What the wrappers pass on without timing it.
UNTIMED = {"storage": {"close"}, "backplane": {"directory", "attach", "release", "unlock_mailbox"}}


def test_the_tables_name_every_timed_operation():
    assert tuple(STORAGE_CALLS) == STORAGE_OPERATIONS
    assert tuple(BACKPLANE_CALLS) == BACKPLANE_OPERATIONS


@pytest.mark.parametrize(
    ("kind", "interface", "timed"),
    [("storage", IStorage, STORAGE_OPERATIONS), ("backplane", IBackplane, BACKPLANE_OPERATIONS)],
)
def test_every_method_of_the_interface_is_timed_or_passed_on(kind, interface, timed):
    # A method added to the interface must be added to its wrapper (chatroute/metrics.py).
    assert set(interface.names()) == set(timed) | UNTIMED[kind]


def wrapped(kind: str) -> tuple[Any, Pending, ServerMetrics, Clock]:
    clock = Clock()
    metrics = ServerMetrics(clock, process=False)
    inner = Pending()
    outer = metrics.timed_storage(inner) if kind == "storage" else metrics.timed_backplane(inner)
    return outer, inner, metrics, clock


def test_wrappers_provide_their_interfaces():
    verifyObject(IStorage, wrapped("storage")[0])
    verifyObject(IBackplane, wrapped("backplane")[0])


@pytest.mark.parametrize(
    ("kind", "operation", "args"),
    [("storage", *item) for item in STORAGE_CALLS.items()]
    + [("backplane", *item) for item in BACKPLANE_CALLS.items()],
)
def test_each_operation_is_passed_on_and_timed_until_it_fires(kind, operation, args):
    outer, inner, metrics, clock = wrapped(kind)
    name = f"chatroute_{kind}_seconds"
    result = getattr(outer, operation)(*args)
    assert inner.calls == [(operation, args)]
    clock.advance(0.03)
    assert metrics.registry.get_sample_value(f"{name}_count", {"operation": operation}) == 0
    inner.waiting[0].callback("the result")
    assert settled(result) == "the result"
    samples = {"operation": operation}
    assert metrics.registry.get_sample_value(f"{name}_count", samples) == 1
    assert metrics.registry.get_sample_value(f"{name}_sum", samples) == pytest.approx(0.03)
    assert metrics.registry.get_sample_value(f"{name}_bucket", {**samples, "le": "0.025"}) == 0
    assert metrics.registry.get_sample_value(f"{name}_bucket", {**samples, "le": "0.05"}) == 1


@pytest.mark.parametrize(
    ("kind", "operation", "args"),
    [("storage", "get_account", ("alice",)), ("backplane", "join", (PRESENCE, "#lobby", 1.0))],
)
def test_failures_are_counted_and_refusals_are_not(kind, operation, args):
    outer, inner, metrics, _ = wrapped(kind)
    refused, failed = (getattr(outer, operation)(*args) for _ in range(2))
    inner.waiting[0].errback(NicknameTaken("alice"))
    inner.waiting[1].errback(sqlite3.OperationalError("disk I/O error"))
    outcomes: list[Failure] = []
    refused.addErrback(outcomes.append)
    failed.addErrback(outcomes.append)
    assert [outcome.type for outcome in outcomes] == [NicknameTaken, sqlite3.OperationalError]
    labels = {"operation": operation}
    registry = metrics.registry
    assert registry.get_sample_value(f"chatroute_{kind}_failures_total", labels) == 1
    assert registry.get_sample_value(f"chatroute_{kind}_seconds_count", labels) == 2


def test_a_call_that_raises_is_timed_counted_and_raised():
    class Raising(MemoryStorage):
        def get_account(self, name: str) -> Any:
            raise RuntimeError("bug")

    metrics = ServerMetrics(Clock(), process=False)
    with pytest.raises(RuntimeError):
        metrics.timed_storage(Raising()).get_account("alice")
    labels = {"operation": "get_account"}
    assert metrics.registry.get_sample_value("chatroute_storage_failures_total", labels) == 1
    assert metrics.registry.get_sample_value("chatroute_storage_seconds_count", labels) == 1


def test_a_step_back_of_the_clock_is_no_negative_time():
    outer, inner, metrics, clock = wrapped("storage")
    clock.rightNow = 100.0
    outer.get_account("alice")
    clock.rightNow = 99.0
    inner.waiting[0].callback(None)
    labels = {"operation": "get_account"}
    assert metrics.registry.get_sample_value("chatroute_storage_seconds_sum", labels) == 0


def test_close_is_passed_on_untimed():
    storage = MemoryStorage()
    metrics = ServerMetrics(Clock(), process=False)
    settled(metrics.timed_storage(storage).close())
    assert settled(storage.close()) is None  # MemoryStorage may be closed again


def test_the_backplane_wrapper_passes_on_what_it_does_not_time():
    outer, inner, *_ = wrapped("backplane")
    assert outer.directory is inner.directory
    router = object()
    outer.attach(router)
    outer.release(PRESENCE, "bye")
    outer.unlock_mailbox("alice", "token")
    assert inner.calls == [
        ("attach", (router,)),
        ("release", (PRESENCE, "bye")),
        ("unlock_mailbox", ("alice", "token")),
    ]
    assert inner.waiting[0].called is False  # returned, not waited on


def test_a_router_runs_on_the_timed_backplane():
    outer, inner, _, clock = wrapped("backplane")
    router = Router(MemoryStorage(), clock, backplane=outer)
    assert router._directory is inner.directory
    assert inner.calls == [("attach", (router,))]


# The page.


def scrape(site: MetricsSite, accept: str | None = None) -> DummyRequest:
    request = DummyRequest([b"metrics"])
    if accept is not None:
        request.requestHeaders.setRawHeaders(b"accept", [accept.encode()])
    resource = site.getResourceFor(request)
    request.write(resource.render(request))
    return request


def test_the_page_is_the_text_format(server):
    server.connect("alice")
    request = scrape(server.metrics.site())
    content_type = request.responseHeaders.getRawHeaders(b"content-type")[0]
    assert content_type.startswith(b"text/plain")
    families = {
        family.name: family
        for family in text_string_to_metric_families(b"".join(request.written).decode())
    }
    users = {
        sample.labels["frontend"]: sample.value for sample in families["chatroute_users"].samples
    }
    assert users == {"line": 1, "web": 0, "irc": 0}
    assert families["chatroute_messages_in"].type == "counter"


def test_openmetrics_when_asked(server):
    request = scrape(server.metrics.site(), "application/openmetrics-text; version=1.0.0")
    content_type = request.responseHeaders.getRawHeaders(b"content-type")[0]
    assert content_type.startswith(b"application/openmetrics-text")
    assert b"".join(request.written).endswith(b"# EOF\n")


def test_scrapes_are_not_logged(server):
    site = server.metrics.site()
    with capturedLogs() as events:
        site.log(DummyRequest([b"metrics"]))
    assert events == []


def test_only_metrics_is_served(server):
    request = DummyRequest([b""])
    resource = server.metrics.site().getResourceFor(request)
    resource.render(request)
    assert request.responseCode == 404
