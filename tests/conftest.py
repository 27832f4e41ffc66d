"""
Shared test helpers: recording participants, a synchronous chat, settling
Deferreds, and a private PostgreSQL server.
"""

from __future__ import annotations

import os
import pwd
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from zope.interface import implementer

from chatroute.core.accounts import Accounts
from chatroute.core.auth import LoginThrottle, login_portal
from chatroute.core.directory import Presence
from chatroute.core.errors import ChatError
from chatroute.core.events import Event
from chatroute.core.interfaces import IParticipant
from chatroute.core.passwords import PasswordHashing
from chatroute.core.router import Router, RouterSettings
from chatroute.storage.memory import MemoryStorage

from .postgres_server import PostgresServer, postgres_binaries
from .redis_server import RedisServer, private_redis

CHEAP_HASHING = {"time_cost": 1, "memory_cost": 8, "parallelism": 1}


def settled(result: Deferred[Any] | None) -> Any:
    """The result of a Deferred that has already fired; its failure is raised."""
    if result is None:
        return None
    outcomes: list[Any] = []
    result.addBoth(outcomes.append)
    assert outcomes, "the Deferred has not fired"
    if isinstance(outcomes[0], Failure):
        outcomes[0].raiseException()
    return outcomes[0]


class InlineThreads:
    """Stands in for a reactor and its thread pool: 'threaded' work runs at once, here."""

    def getThreadPool(self) -> InlineThreads:
        return self

    def callFromThread(self, function: Any, *args: Any) -> None:
        function(*args)

    def callInThreadWithCallback(self, on_result: Any, function: Any, *args: Any) -> None:
        try:
            value = function(*args)
        except BaseException:
            on_result(False, Failure())
        else:
            on_result(True, value)


class Chat:
    """A router and accounts on memory storage, with a test clock; everything settles at once."""

    def __init__(self, settings: RouterSettings | None = None) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.storage = MemoryStorage()
        self.router = Router(self.storage, self.clock, settings)
        hashing = PasswordHashing(InlineThreads(), PasswordHasher(**CHEAP_HASHING))  # type: ignore[arg-type]
        self.throttle = LoginThrottle(self.clock)
        self.accounts = Accounts(
            self.router, self.storage, hashing, login_portal(self.storage, hashing), self.throttle
        )


@implementer(IParticipant)
class RecordingParticipant:
    """Keeps every delivered event, in order, and whether it was closed."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.errors: list[ChatError] = []
        self.closed: str | None = None

    def deliver(self, event: Event) -> None:
        self.events.append(event)

    def reply_error(self, error: ChatError) -> None:
        self.errors.append(error)

    def close(self, reason: str) -> None:
        self.closed = reason

    def take(self) -> list[Event]:
        """The events so far, forgetting them."""
        events, self.events = self.events, []
        return events


class Person:
    """A recording participant connected to a router, optionally registered as a guest."""

    def __init__(self, router: Router, nick: str | None = None) -> None:
        self.participant = RecordingParticipant()
        self.presence: Presence = router.connect(self.participant)
        if nick is not None:
            settled(router.register(self.presence, nick))
            self.participant.take()

    def take(self) -> list[Event]:
        return self.participant.take()


@pytest.fixture
def chat() -> Chat:
    return Chat()


@pytest.fixture
def router(chat: Chat) -> Router:
    return chat.router


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """
    A private PostgreSQL server on a free loopback port, for the whole test
    session; stopped and removed at its end.

    Skips, saying why, only where PostgreSQL is not installed or cannot be
    run (C{scripts/setup-test-packages} installs it as root).
    """
    pytest.importorskip("psycopg", reason="psycopg is not installed (scripts/setup-env test)")
    binaries = postgres_binaries()
    if binaries is None:
        pytest.skip(
            "PostgreSQL is not installed: no initdb, pg_ctl and postgres in "
            "/usr/lib/postgresql/*/bin or on PATH (scripts/setup-test-packages installs it as root)"
        )
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("PostgreSQL refuses to run as root, and there is no postgres user")
        if shutil.which("runuser") is None:
            pytest.skip("PostgreSQL refuses to run as root, and there is no runuser")
    server = PostgresServer(binaries)
    try:
        server.start()
        yield server
    finally:
        server.remove()


@pytest.fixture
def restart_postgres(postgres: PostgresServer) -> Iterator[Callable[[], None]]:
    """
    Restart the private server: C{pg_ctl stop -m fast}, then start it on the
    same port with the same data. It runs again after the test, whatever happens.
    """
    try:
        yield postgres.restart
    finally:
        if not postgres.running:
            postgres.start()


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> Iterator[str]:
    """The URL of a new, empty database on the private server, dropped after the test."""
    name = postgres.create_database()
    try:
        yield postgres.url(name)
    finally:
        if not postgres.running:  # a test that stopped it and failed before starting it again
            postgres.start()
        postgres.drop_database(name)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private, empty C{redis-server} on a free loopback port, stopped after the test."""
    with private_redis(tmp_path / "redis") as server:
        yield server
