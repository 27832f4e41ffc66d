"""Logging in with twisted.cred against stored accounts, and the throttle on guessing."""

from __future__ import annotations

import pytest
import pytest_twisted
from argon2 import PasswordHasher
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import reactor
from twisted.internet.defer import fail
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from zope.interface import Interface

from chatroute.core.auth import (
    AccountAvatar,
    AccountRealm,
    IAccountAvatar,
    LoginThrottle,
    StoredPasswordChecker,
    login_portal,
)
from chatroute.core.passwords import PasswordHashing
from chatroute.storage.memory import MemoryStorage

CHEAP = {"time_cost": 1, "memory_cost": 8, "parallelism": 1}


class CountingHashing(PasswordHashing):
    """Counts verifications."""

    verified = 0

    def verify(self, password_hash, password):
        self.verified += 1
        return super().verify(password_hash, password)


class BrokenStorage(MemoryStorage):
    """Cannot change a password hash."""

    def set_password_hash(self, name, password_hash):
        return fail(OSError("disk full"))


@pytest.fixture
def hashing():
    return CountingHashing(reactor, PasswordHasher(**CHEAP))


@pytest.fixture
def stronger():
    """Hashing with parameters that outdate those of L{hashing}."""
    return PasswordHashing(reactor, PasswordHasher(**{**CHEAP, "time_cost": 2}))


@pytest.fixture
def storage():
    return MemoryStorage()


async def register(storage, hashing, name="Alice", password="secret"):
    await storage.create_account(name, await hashing.hash(password))


async def login(portal, name: bytes, password: bytes):
    return await portal.login(UsernamePassword(name, password), None, IAccountAvatar)


@pytest_twisted.ensureDeferred
async def test_login_gives_the_name_as_registered(storage, hashing):
    await register(storage, hashing)
    interface, avatar, logout = await login(login_portal(storage, hashing), b"ALICE", b"secret")
    assert interface is IAccountAvatar
    assert avatar == AccountAvatar("Alice")
    assert IAccountAvatar.providedBy(avatar)
    logout()


@pytest_twisted.ensureDeferred
async def test_checker_fires_with_the_encoded_name(storage, hashing):
    await register(storage, hashing, name="Zoë")
    checker = StoredPasswordChecker(storage, hashing)
    credentials = UsernamePassword("zoë".encode(), b"secret")
    assert await checker.requestAvatarId(credentials) == "Zoë".encode()


@pytest.mark.parametrize(
    ("name", "password"),
    [(b"alice", b"wrong"), (b"alice", b""), (b"nobody", b"secret"), (b"\xff", b"secret")],
)
@pytest_twisted.ensureDeferred
async def test_refused_logins_fail_alike(storage, hashing, name, password):
    await register(storage, hashing)
    with pytest.raises(UnauthorizedLogin):
        await login(login_portal(storage, hashing), name, password)


@pytest_twisted.ensureDeferred
async def test_unknown_name_costs_a_verification_too(storage, hashing):
    portal = login_portal(storage, hashing)
    for _ in range(2):
        with pytest.raises(UnauthorizedLogin):
            await login(portal, b"nobody", b"secret")
    assert hashing.verified == 2


@pytest_twisted.ensureDeferred
async def test_unusable_stored_hash_refuses_and_logs(storage, hashing):
    await storage.create_account("alice", "not a hash")
    with capturedLogs() as events, pytest.raises(UnauthorizedLogin):
        await login(login_portal(storage, hashing), b"alice", b"secret")
    assert [event["log_level"].name for event in events] == ["error"]
    assert events[0]["name"] == "alice"


@pytest_twisted.ensureDeferred
async def test_outdated_hash_is_replaced_at_login(storage, hashing, stronger):
    await register(storage, hashing)
    await login(login_portal(storage, stronger), b"alice", b"secret")
    account = await storage.get_account("alice")
    assert stronger.needs_rehash(account.password_hash) is False
    assert await stronger.verify(account.password_hash, "secret") is True


@pytest_twisted.ensureDeferred
async def test_current_hash_is_kept(storage, hashing):
    await register(storage, hashing)
    before = await storage.get_account("alice")
    await login(login_portal(storage, hashing), b"alice", b"secret")
    assert await storage.get_account("alice") == before


@pytest_twisted.ensureDeferred
async def test_failing_rehash_is_logged_and_the_login_succeeds(hashing, stronger):
    storage = BrokenStorage()
    await register(storage, hashing)
    with capturedLogs() as events:
        _, avatar, _ = await login(login_portal(storage, stronger), b"alice", b"secret")
    assert avatar == AccountAvatar("Alice")
    (failure,) = [event["log_failure"] for event in events if "log_failure" in event]
    assert failure.check(OSError)


class IOther(Interface):
    pass


@pytest.mark.parametrize(("avatar_id", "interface"), [(b"alice", IOther), ((), IAccountAvatar)])
def test_realm_refuses_other_interfaces_and_anonymous(avatar_id, interface):
    with pytest.raises(NotImplementedError):
        AccountRealm().requestAvatar(avatar_id, None, interface)


# The throttle.


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def throttle(clock):
    return LoginThrottle(clock)


def fail_times(throttle, clock, count, account="alice", address="192.0.2.1"):
    """Fail C{count} logins, each as soon as the throttle allows; the waits seen."""
    waits = []
    for _ in range(count):
        wait = throttle.check(account, address)
        waits.append(wait)
        clock.advance(wait)
        throttle.failed(account, address)
    return waits


def test_waits_grow_after_free_failures_up_to_a_cap(throttle, clock):
    waits = fail_times(throttle, clock, 9)
    assert waits == [0, 0, 0, 1, 2, 4, 8, 16, 32]
    assert throttle.check("alice", "192.0.2.1") == 60


def test_wait_counts_down(throttle, clock):
    fail_times(throttle, clock, 3)
    assert throttle.check("alice", "192.0.2.1") == 1.0
    clock.advance(0.25)
    assert throttle.check("alice", "192.0.2.1") == 0.75
    clock.advance(0.75)
    assert throttle.check("alice", "192.0.2.1") == 0


def test_an_account_is_throttled_whatever_the_address_and_case(throttle, clock):
    for n in range(3):
        throttle.failed("Alice", f"192.0.2.{n}")
    assert throttle.check("ALICE", "198.51.100.7") == 1.0
    assert throttle.check("bob", "192.0.2.0") == 0


def test_an_address_is_throttled_whatever_the_account(throttle, clock):
    for name in ("alice", "bob", "carol"):
        throttle.failed(name, "192.0.2.1")
    assert throttle.check("dave", "192.0.2.1") == 1.0
    assert throttle.check("alice", "192.0.2.2") == 0


def test_a_server_password_counts_against_the_address_alone(throttle, clock):
    for _ in range(3):
        throttle.failed(None, "192.0.2.1")
    assert throttle.check(None, "192.0.2.1") == 1.0
    assert throttle.check("alice", "192.0.2.1") == 1.0
    assert throttle.check(None, "192.0.2.2") == 0
    assert throttle.check("alice", "192.0.2.2") == 0


def test_lockout_after_the_threshold_then_a_fresh_start(throttle, clock):
    fail_times(throttle, clock, 10)
    assert throttle.check("alice", "192.0.2.1") == 900
    assert throttle.check("alice", "198.51.100.7") == 900
    clock.advance(899)
    assert throttle.check("alice", "192.0.2.1") == 1
    clock.advance(1)
    assert fail_times(throttle, clock, 4) == [0, 0, 0, 1]


def test_failures_out_of_the_window_do_not_count(clock):
    throttle = LoginThrottle(clock, window=600, max_delay=1)
    fail_times(throttle, clock, 9)
    clock.advance(600)
    assert throttle.check("alice", "192.0.2.1") == 0
    throttle.failed("alice", "192.0.2.1")
    assert throttle.check("alice", "192.0.2.1") == 0


def test_success_clears_the_account_but_not_the_address(throttle, clock):
    fail_times(throttle, clock, 5)
    throttle.succeeded("ALICE", "192.0.2.1")
    assert throttle.check("alice", "198.51.100.7") == 0
    assert throttle.check("bob", "192.0.2.1") == 4


def test_settings(clock):
    throttle = LoginThrottle(
        clock, free_failures=0, first_delay=0.5, max_delay=2, lockout_failures=6, lockout=30
    )
    assert fail_times(throttle, clock, 6) == [0, 0.5, 1, 2, 2, 2]
    assert throttle.check("alice", "192.0.2.1") == 30


def test_old_records_are_forgotten(clock):
    throttle = LoginThrottle(clock, window=60, lockout=60)
    for n in range(100):
        throttle.failed(f"user{n}", f"192.0.2.{n}")
    assert throttle.tracked == 200
    clock.advance(59)
    assert throttle.check("user0", "192.0.2.0") == 0
    assert throttle.tracked == 200
    clock.advance(1)
    throttle.check("user0", "192.0.2.0")
    assert throttle.tracked == 0


def test_a_lockout_is_remembered_until_it_ends(clock):
    throttle = LoginThrottle(clock, window=60, lockout=300)
    for _ in range(10):
        throttle.failed("alice", "192.0.2.1")
    clock.advance(299)
    assert throttle.check("alice", "198.51.100.7") == 1
    assert throttle.tracked == 2
    clock.advance(1)
    assert throttle.check("alice", "192.0.2.1") == 0
    assert throttle.tracked == 0
