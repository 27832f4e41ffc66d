"""Password hashing: argon2id, in a thread pool, and telling which hashes are outdated."""

from __future__ import annotations

import threading

import pytest
import pytest_twisted
from argon2 import PasswordHasher
from twisted.internet import reactor
from twisted.python.threadpool import ThreadPool

from chatroute.core.passwords import InvalidPasswordHash, PasswordHashing, normalise_password

# Cheap parameters keep the tests fast; production uses argon2-cffi's defaults.
CHEAP = {"time_cost": 1, "memory_cost": 8, "parallelism": 1}


class ThreadRecordingHasher(PasswordHasher):
    """Notes the thread each hash and verification runs in."""

    def __init__(self) -> None:
        super().__init__(**CHEAP)
        self.threads: list[threading.Thread] = []

    def hash(self, password, *, salt=None):
        self.threads.append(threading.current_thread())
        return super().hash(password, salt=salt)

    def verify(self, hash, password):
        self.threads.append(threading.current_thread())
        return super().verify(hash, password)


@pytest.fixture
def hashing():
    return PasswordHashing(reactor, PasswordHasher(**CHEAP))


@pytest_twisted.ensureDeferred
async def test_hash_then_verify(hashing):
    password_hash = await hashing.hash("correct horse")
    assert password_hash.startswith("$argon2id$v=19$m=8,t=1,p=1$")
    assert await hashing.verify(password_hash, "correct horse") is True


@pytest_twisted.ensureDeferred
async def test_wrong_password_is_false_not_an_error(hashing):
    password_hash = await hashing.hash("correct horse")
    assert await hashing.verify(password_hash, "battery staple") is False
    assert await hashing.verify(password_hash, "") is False


@pytest_twisted.ensureDeferred
async def test_hashes_are_salted(hashing):
    assert await hashing.hash("same") != await hashing.hash("same")


@pytest.mark.parametrize(
    "password_hash",
    [
        "",
        "garbage",
        "$2b$12$bcryptbcryptbcryptbcryptbcryptbcryptbcryptbcrypt",
        "$argon2id$v=19$m=8,t=1,p=1$xx$",
    ],
)
@pytest_twisted.ensureDeferred
async def test_verify_against_an_unusable_hash(hashing, password_hash):
    with pytest.raises(InvalidPasswordHash):
        await hashing.verify(password_hash, "anything")


@pytest_twisted.ensureDeferred
async def test_needs_rehash_after_a_change_of_parameters(hashing):
    old = await hashing.hash("pw")
    assert hashing.needs_rehash(old) is False
    stronger = PasswordHashing(reactor, PasswordHasher(**{**CHEAP, "time_cost": 2}))
    assert stronger.needs_rehash(old) is True
    assert stronger.needs_rehash(await stronger.hash("pw")) is False
    # Outdated hashes still verify.
    assert await stronger.verify(old, "pw") is True


def test_needs_rehash_of_an_unusable_hash(hashing):
    with pytest.raises(InvalidPasswordHash):
        hashing.needs_rehash("garbage")


@pytest_twisted.ensureDeferred
async def test_defaults_are_rfc_9106_low_memory():
    password_hash = await PasswordHashing(reactor).hash("pw")
    assert password_hash.startswith("$argon2id$v=19$m=65536,t=3,p=4$")


@pytest_twisted.ensureDeferred
async def test_work_runs_in_the_reactor_pool_not_the_reactor_thread():
    hasher = ThreadRecordingHasher()
    hashing = PasswordHashing(reactor, hasher)
    await hashing.verify(await hashing.hash("pw"), "pw")
    assert len(hasher.threads) == 2
    assert threading.current_thread() not in hasher.threads


@pytest_twisted.ensureDeferred
async def test_work_runs_in_the_given_pool():
    hasher = ThreadRecordingHasher()
    pool = ThreadPool(minthreads=0, maxthreads=1, name="passwords")
    pool.start()
    try:
        hashing = PasswordHashing(reactor, hasher, pool)
        await hashing.verify(await hashing.hash("pw"), "pw")
    finally:
        pool.stop()
    assert [thread.name for thread in hasher.threads] == ["PoolThread-passwords-0"] * 2


@pytest.mark.parametrize(
    ("typed", "password"),
    [
        ("secret123", "secret123"),
        ("  secret123\t", "secret123"),
        ("correct horse battery staple", "correct horse battery staple"),
        (" correct  horse\t\tbattery \u00a0staple ", "correct horse battery staple"),
        ("p\u00e4ss w\u00f6rd", "p\u00e4ss w\u00f6rd"),
        ("   ", ""),
    ],
)
def test_normalise_password(typed, password):
    assert normalise_password(typed) == password
