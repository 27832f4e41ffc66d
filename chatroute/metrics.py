"""
The server's Prometheus metrics, served on C{--listen-metrics} endpoints.

Every server has a registry of its own (L{ServerMetrics}), not
prometheus-client's global one, so that a process, a test say, can hold
several. What it holds:

  - L{ChatCollector}, which reads the chat's state when scraped: connections
    and users by front end, rooms, messages in and out, errors by kind, and
    the backplane's links. Nothing is updated on the message path for it:
    the counts it reads are plain integers the sessions keep anyway
    (L{chatroute.core.session.Outbox}).
  - The latency of every storage operation and backplane call, by
    operation: L{TimedStorage} and L{TimedBackplane} sit at the
    L{IStorage} and L{IBackplane} seams and time each Deferred; C{tap.py}
    puts them in place only when metrics are on.
  - The process's own metrics (CPU, memory, open files) and Python's.

docs/deploy.md ("Metrics") says what each metric means. The page is
rendered on the reactor thread (L{MetricsPage}), as the collector reads
state that only the reactor thread may touch; prometheus-client's own
Twisted resource renders in a thread pool.
"""

from collections.abc import Callable, Iterable, Sequence
from typing import ParamSpec, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from twisted.web.http import Request as HTTPRequest
from twisted.web.pages import notFound
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request, Site
from zope.interface import implementer

from chatroute.backplane.redis import RedisBackplane
from chatroute.core.directory import Presence
from chatroute.core.errors import ChatError
from chatroute.core.events import RoomMessage
from chatroute.core.interfaces import (
    Account,
    HistoryEntry,
    IBackplane,
    IDirectory,
    IStorage,
    StoredMessage,
)
from chatroute.core.router import Router
from chatroute.core.session import Hub

FRONTENDS = ("line", "web", "irc")
"""The front ends, each shown (with 0) whether or not it listens."""

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
"""
Seconds: from a Redis round trip on one machine (well under a millisecond)
to a write waiting out SQLite's busy timeout (5 s), a Redis reply timeout
(10 s), or a request retried while PostgreSQL is away (up to 60 s).
"""

STORAGE_OPERATIONS = (
    "create_account",
    "get_account",
    "set_password_hash",
    "store_message",
    "pending_messages",
    "delete_messages",
    "append_history",
    "recent_history",
)
"""The L{IStorage} methods that are timed (all but C{close})."""

BACKPLANE_OPERATIONS = (
    "claim",
    "set_away",
    "mark_account",
    "join",
    "leave",
    "say",
    "set_topic",
    "set_operator",
    "kick",
    "set_ban",
    "set_voice",
    "set_room_mode",
    "lock_mailbox",
)
"""The L{IBackplane} methods that return a Deferred, which are timed."""

_P = ParamSpec("_P")
_T = TypeVar("_T")


class ChatCollector:
    """
    Reads the chat's figures from the hub (and the backplane) when scraped.

    Gauges are counted from the router's state at each scrape, which costs
    a walk over this node's connections then and nothing in between.
    """

    def __init__(self, hub: Hub, backplane: RedisBackplane | None = None) -> None:
        """
        @param hub: what every session shares: the router, the counts, the errors.
        @param backplane: the Redis backplane, if the node has one.
        """
        self._hub = hub
        self._backplane = backplane

    def collect(self) -> Iterable[Metric]:
        """The metrics as they are now (prometheus-client's C{Collector})."""
        yield from self._people(self._hub.router)
        counts = self._hub.router.counts()
        yield GaugeMetricFamily(
            "chatroute_network_users",
            "Users with a nickname in the whole chat: this node's and, with a backplane, "
            "the other nodes'.",
            value=counts.users,
        )
        yield GaugeMetricFamily("chatroute_rooms", "Rooms open in the chat.", value=counts.rooms)
        outbox = self._hub.outbox
        yield CounterMetricFamily(
            "chatroute_messages_in",
            "Lines (commands) received from clients of every front end, refused ones too.",
            value=outbox.received,
        )
        yield CounterMetricFamily(
            "chatroute_messages_out",
            "Events and errors sent to clients of every front end.",
            value=outbox.sent,
        )
        errors = CounterMetricFamily(
            "chatroute_errors",
            "Errors sent to clients, by kind (the error's class name).",
            labels=["kind"],
        )
        for kind, count in sorted(self._hub.errors.items(), key=lambda item: item[0].__name__):
            errors.add_metric([kind.__name__], count)
        yield errors
        if self._backplane is not None:
            yield from self._backplane_metrics(self._backplane)

    def _people(self, router: Router) -> Iterable[Metric]:
        connections = dict.fromkeys(FRONTENDS, 0)
        users = dict.fromkeys(FRONTENDS, 0)
        for presence in router.connected():
            frontend = getattr(presence.participant, "frontend", "other")
            connections[frontend] = connections.get(frontend, 0) + 1
            if presence.nick is not None:
                users[frontend] = users.get(frontend, 0) + 1
        yield _by_frontend(
            "chatroute_connections", "Connections open on this node, by front end.", connections
        )
        yield _by_frontend(
            "chatroute_users",
            "Users with a nickname (guests and accounts) connected to this node, by front end.",
            users,
        )

    def _backplane_metrics(self, backplane: RedisBackplane) -> Iterable[Metric]:
        links = backplane.links
        connected = GaugeMetricFamily(
            "chatroute_backplane_connected",
            "Whether the connection to Redis is up (1) or not (0), by link.",
            labels=["link"],
        )
        reconnects = CounterMetricFamily(
            "chatroute_backplane_reconnects",
            "Times a connection to Redis was made again after being lost, by link.",
            labels=["link"],
        )
        for name, link in links.items():
            connected.add_metric([name], 1 if link.ready else 0)
            reconnects.add_metric([name], link.reconnects)
        yield connected
        yield reconnects
        yield GaugeMetricFamily(
            "chatroute_backplane_synced",
            "Whether this node is in step with the network (1), so that changes can be made, "
            "or not (0).",
            value=1 if backplane.synced else 0,
        )


def _by_frontend(name: str, documentation: str, counts: dict[str, int]) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(name, documentation, labels=["frontend"])
    for frontend, count in counts.items():
        gauge.add_metric([frontend], count)
    return gauge


class _Stopwatch:
    """
    Times calls returning Deferreds into a histogram labelled by operation,
    and counts those that fail with anything but a L{ChatError} (a refusal,
    such as a taken name, is an answer, not a failure).
    """

    def __init__(
        self,
        clock: IReactorTime,
        latency: Histogram,
        failures: Counter,
        operations: Sequence[str],
    ) -> None:
        self._clock = clock
        # Each operation's series looked up once, not at every call.
        self._latency = {operation: latency.labels(operation) for operation in operations}
        self._failures = {operation: failures.labels(operation) for operation in operations}

    def time(
        self,
        operation: str,
        call: Callable[_P, Deferred[_T]],
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> Deferred[_T]:
        """C{call(*args, **kwargs)}, timed from now until its Deferred fires."""
        started = self._clock.seconds()
        try:
            result = call(*args, **kwargs)
        except BaseException:
            self._done(Failure(), operation, started)
            raise
        return result.addBoth(self._done, operation, started)

    def _done(self, outcome: _T, operation: str, started: float) -> _T:
        # The reactor's clock is the wall clock; a step backwards is not a negative time.
        self._latency[operation].observe(max(0.0, self._clock.seconds() - started))
        if isinstance(outcome, Failure) and not outcome.check(ChatError):
            self._failures[operation].inc()
        return outcome


@implementer(IStorage)
class TimedStorage:
    """An L{IStorage} that passes every call to another, timing it."""

    def __init__(self, storage: IStorage, stopwatch: _Stopwatch) -> None:
        self._storage = storage
        self._time = stopwatch.time

    def create_account(self, name: str, password_hash: str) -> Deferred[None]:
        """See L{IStorage.create_account}."""
        return self._time("create_account", self._storage.create_account, name, password_hash)

    def get_account(self, name: str) -> Deferred[Account | None]:
        """See L{IStorage.get_account}."""
        return self._time("get_account", self._storage.get_account, name)

    def set_password_hash(self, name: str, password_hash: str) -> Deferred[None]:
        """See L{IStorage.set_password_hash}."""
        return self._time("set_password_hash", self._storage.set_password_hash, name, password_hash)

    def store_message(
        self, recipient: str, sender: str, text: str, sent_at: float, cap: int, action: bool = False
    ) -> Deferred[int]:
        """See L{IStorage.store_message}."""
        return self._time(
            "store_message",
            self._storage.store_message,
            recipient,
            sender,
            text,
            sent_at,
            cap,
            action,
        )

    def pending_messages(self, recipient: str) -> Deferred[list[StoredMessage]]:
        """See L{IStorage.pending_messages}."""
        return self._time("pending_messages", self._storage.pending_messages, recipient)

    def delete_messages(self, ids: Sequence[int]) -> Deferred[None]:
        """See L{IStorage.delete_messages}."""
        return self._time("delete_messages", self._storage.delete_messages, ids)

    def append_history(
        self, room: str, sender: str, text: str, sent_at: float, action: bool = False
    ) -> Deferred[None]:
        """See L{IStorage.append_history}."""
        return self._time(
            "append_history", self._storage.append_history, room, sender, text, sent_at, action
        )

    def recent_history(self, room: str, limit: int) -> Deferred[list[HistoryEntry]]:
        """See L{IStorage.recent_history}."""
        return self._time("recent_history", self._storage.recent_history, room, limit)

    def close(self) -> Deferred[None]:
        """See L{IStorage.close}; not timed."""
        return self._storage.close()


@implementer(IBackplane)
class TimedBackplane:
    """An L{IBackplane} that passes every call to another, timing those that return a Deferred."""

    def __init__(self, backplane: IBackplane, stopwatch: _Stopwatch) -> None:
        self._backplane = backplane
        self._time = stopwatch.time

    @property
    def directory(self) -> IDirectory:
        """The other backplane's directory (L{IBackplane.directory})."""
        directory: IDirectory = self._backplane.directory
        return directory

    def attach(self, router: Router) -> None:
        """See L{IBackplane.attach}."""
        self._backplane.attach(router)

    def claim(self, presence: Presence, nick: str, account: bool, takeover: bool) -> Deferred[None]:
        """See L{IBackplane.claim}."""
        return self._time("claim", self._backplane.claim, presence, nick, account, takeover)

    def release(self, presence: Presence, reason: str | None) -> None:
        """See L{IBackplane.release}; not timed, as nothing waits for it."""
        self._backplane.release(presence, reason)

    def set_away(self, presence: Presence, message: str | None) -> Deferred[None]:
        """See L{IBackplane.set_away}."""
        return self._time("set_away", self._backplane.set_away, presence, message)

    def mark_account(self, presence: Presence) -> Deferred[None]:
        """See L{IBackplane.mark_account}."""
        return self._time("mark_account", self._backplane.mark_account, presence)

    def join(self, presence: Presence, room: str, at: float) -> Deferred[None]:
        """See L{IBackplane.join}."""
        return self._time("join", self._backplane.join, presence, room, at)

    def leave(self, presence: Presence, room: str, reason: str | None) -> Deferred[None]:
        """See L{IBackplane.leave}."""
        return self._time("leave", self._backplane.leave, presence, room, reason)

    def say(self, presence: Presence, message: RoomMessage) -> Deferred[None]:
        """See L{IBackplane.say}."""
        return self._time("say", self._backplane.say, presence, message)

    def set_topic(
        self, presence: Presence, room: str, topic: str | None, at: float
    ) -> Deferred[None]:
        """See L{IBackplane.set_topic}."""
        return self._time("set_topic", self._backplane.set_topic, presence, room, topic, at)

    def set_operator(
        self, presence: Presence, room: str, nick: str, operator: bool
    ) -> Deferred[None]:
        """See L{IBackplane.set_operator}."""
        return self._time(
            "set_operator", self._backplane.set_operator, presence, room, nick, operator
        )

    def kick(self, presence: Presence, room: str, nick: str, reason: str | None) -> Deferred[None]:
        """See L{IBackplane.kick}."""
        return self._time("kick", self._backplane.kick, presence, room, nick, reason)

    def set_ban(self, presence: Presence, room: str, nick: str, banned: bool) -> Deferred[None]:
        """See L{IBackplane.set_ban}."""
        return self._time("set_ban", self._backplane.set_ban, presence, room, nick, banned)

    def set_voice(self, presence: Presence, room: str, nick: str, voiced: bool) -> Deferred[None]:
        """See L{IBackplane.set_voice}."""
        return self._time("set_voice", self._backplane.set_voice, presence, room, nick, voiced)

    def set_room_mode(self, presence: Presence, room: str, mode: str, on: bool) -> Deferred[None]:
        """See L{IBackplane.set_room_mode}."""
        return self._time("set_room_mode", self._backplane.set_room_mode, presence, room, mode, on)

    def lock_mailbox(self, name: str) -> Deferred[str]:
        """See L{IBackplane.lock_mailbox}."""
        return self._time("lock_mailbox", self._backplane.lock_mailbox, name)

    def unlock_mailbox(self, name: str, token: str) -> None:
        """See L{IBackplane.unlock_mailbox}; not timed, as nothing waits for it."""
        self._backplane.unlock_mailbox(name, token)


class ServerMetrics:
    """
    One server's metrics: its own registry, the latency histograms, and
    what puts the timing wrappers and the collector in place.

    @ivar registry: everything the server exports.
    """

    def __init__(self, clock: IReactorTime, process: bool = True) -> None:
        """
        @param clock: times storage and backplane calls.
        @param process: include the process's and Python's own metrics
            (tests of the chat's figures leave them out).
        """
        self.registry = CollectorRegistry()
        self._clock = clock
        self._storage = _Stopwatch(
            clock,
            Histogram(
                "chatroute_storage_seconds",
                "Seconds each storage operation took, from the call until its result, "
                "by operation.",
                ["operation"],
                registry=self.registry,
                buckets=LATENCY_BUCKETS,
            ),
            Counter(
                "chatroute_storage_failures",
                "Storage operations that failed (not refusals such as a taken name), by operation.",
                ["operation"],
                registry=self.registry,
            ),
            STORAGE_OPERATIONS,
        )
        self._backplane: _Stopwatch | None = None
        if process:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)

    def timed_storage(self, storage: IStorage) -> IStorage:
        """C{storage}, each operation timed."""
        return TimedStorage(storage, self._storage)

    def timed_backplane(self, backplane: IBackplane) -> IBackplane:
        """C{backplane}, each call that returns a Deferred timed."""
        if self._backplane is None:
            self._backplane = _Stopwatch(
                self._clock,
                Histogram(
                    "chatroute_backplane_seconds",
                    "Seconds each backplane call took, from the call until the change "
                    "was applied on this node or refused, by operation.",
                    ["operation"],
                    registry=self.registry,
                    buckets=LATENCY_BUCKETS,
                ),
                Counter(
                    "chatroute_backplane_failures",
                    "Backplane calls that failed other than by a refusal, by operation.",
                    ["operation"],
                    registry=self.registry,
                ),
                BACKPLANE_OPERATIONS,
            )
        return TimedBackplane(backplane, self._backplane)

    def watch(self, hub: Hub, backplane: RedisBackplane | None = None) -> None:
        """Export the figures of the chat C{hub} serves (L{ChatCollector})."""
        self.registry.register(ChatCollector(hub, backplane))

    def site(self) -> "MetricsSite":
        """The web site serving the metrics at C{/metrics}."""
        return MetricsSite(self.registry)


class MetricsPage(Resource):
    """The metrics, in the text format a scraper asks for (Prometheus's or OpenMetrics)."""

    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self._registry = registry

    def render_GET(self, request: Request) -> bytes:
        """Render every metric of the registry, now, on the reactor thread."""
        accept = request.getHeader("accept")
        encoder, content_type = choose_encoder(accept or "")
        request.setHeader("content-type", content_type)
        return encoder(self._registry)


class _Root(Resource):
    """Nothing but L{MetricsPage} at C{metrics}: anything else is not found."""

    def getChild(self, path: bytes, request: Request) -> IResource:
        """Not found (a child that is not C{metrics})."""
        return notFound()


class MetricsSite(Site):
    """
    Serves L{MetricsPage} at C{/metrics}. Requests are not logged: a scraper
    comes every few seconds.
    """

    noisy = False

    def __init__(self, registry: CollectorRegistry) -> None:
        root = _Root()
        root.putChild(b"metrics", MetricsPage(registry))
        super().__init__(root)

    def log(self, request: HTTPRequest) -> None:
        """Log nothing of each request (Twisted's access log)."""
