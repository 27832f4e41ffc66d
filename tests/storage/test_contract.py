"""
The storage contract: every IStorage (memory, SQLite in memory and in a
file, and a real PostgreSQL) keeps the same promises.
"""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList
from zope.interface.verify import verifyObject

from chatroute.core import errors
from chatroute.core.interfaces import Account, HistoryEntry, IStorage, StoredMessage
from chatroute.storage.memory import MemoryStorage
from chatroute.storage.sqlite import open_sqlite


@pytest_twisted.async_yield_fixture(params=["memory", "sqlite-memory", "sqlite-file", "postgres"])
async def storage(request, tmp_path):
    if request.param == "memory":
        store = MemoryStorage()
    elif request.param == "sqlite-memory":
        store = open_sqlite(":memory:", reactor)
    elif request.param == "sqlite-file":
        store = open_sqlite(str(tmp_path / "chat.db"), reactor)
    else:
        from chatroute.storage.postgres import open_postgres

        store = open_postgres(request.getfixturevalue("postgres_url"), reactor)
    yield store
    await store.close()


async def outcomes(deferreds: list[Deferred]) -> list[object]:
    """Each Deferred's result, or the type of the exception it failed with."""
    results = await DeferredList(deferreds, consumeErrors=True)
    return [value if ok else value.type for ok, value in results]


# The contract: every IStorage.


def test_provides_istorage(storage):
    assert verifyObject(IStorage, storage)


@pytest_twisted.ensureDeferred
async def test_create_and_get_account_in_any_case(storage):
    await storage.create_account("Alice", "hash-1")
    for typed in ("Alice", "alice", "ALICE"):
        assert await storage.get_account(typed) == Account("Alice", "hash-1")


@pytest_twisted.ensureDeferred
async def test_get_unknown_account(storage):
    assert await storage.get_account("nobody") is None


@pytest_twisted.ensureDeferred
async def test_duplicate_account_in_another_case(storage):
    await storage.create_account("Alice", "hash-1")
    with pytest.raises(errors.AccountExists, match="ALICE is already registered"):
        await storage.create_account("ALICE", "hash-2")
    assert await storage.get_account("alice") == Account("Alice", "hash-1")


@pytest_twisted.ensureDeferred
async def test_only_ascii_letters_are_folded(storage):
    await storage.create_account("Émile", "hash-1")
    await storage.create_account("émile", "hash-2")
    assert await storage.get_account("ÉMILE") == Account("Émile", "hash-1")
    assert await storage.get_account("émile") == Account("émile", "hash-2")


@pytest_twisted.ensureDeferred
async def test_set_password_hash_keeps_name_as_registered(storage):
    await storage.create_account("Alice", "hash-1")
    await storage.set_password_hash("ALICE", "hash-2")
    assert await storage.get_account("alice") == Account("Alice", "hash-2")


@pytest_twisted.ensureDeferred
async def test_set_password_hash_of_unknown_account(storage):
    with pytest.raises(errors.NoSuchAccount, match="no such account: nobody"):
        await storage.set_password_hash("nobody", "hash")


@pytest_twisted.ensureDeferred
async def test_pending_messages_oldest_first_for_recipient_in_any_case(storage):
    first = await storage.store_message("Bob", "alice", "one", 10.0, cap=10)
    await storage.store_message("carol", "alice", "for carol", 11.0, cap=10)
    second = await storage.store_message("BOB", "dave", "two", 12.5, cap=10)
    assert first < second
    assert await storage.pending_messages("bob") == [
        StoredMessage(first, "Bob", "alice", "one", 10.0),
        StoredMessage(second, "BOB", "dave", "two", 12.5),
    ]
    assert await storage.pending_messages("nobody") == []


@pytest_twisted.ensureDeferred
async def test_delete_messages(storage):
    ids = [await storage.store_message("bob", "alice", str(n), float(n), cap=10) for n in range(4)]
    await storage.delete_messages([ids[0], ids[2], 999_999])
    assert [m.text for m in await storage.pending_messages("bob")] == ["1", "3"]
    await storage.delete_messages([])
    assert [m.text for m in await storage.pending_messages("bob")] == ["1", "3"]


@pytest_twisted.ensureDeferred
async def test_message_ids_are_not_reused_after_deletion(storage):
    old = await storage.store_message("bob", "alice", "old", 1.0, cap=10)
    await storage.delete_messages([old])
    new = await storage.store_message("bob", "alice", "new", 2.0, cap=10)
    assert new > old
    await storage.delete_messages([old])
    assert [m.text for m in await storage.pending_messages("bob")] == ["new"]


@pytest_twisted.ensureDeferred
async def test_mailbox_cap(storage):
    kept = [await storage.store_message("bob", "alice", str(n), 1.0, cap=2) for n in range(2)]
    with pytest.raises(errors.MailboxFull, match="BOB is offline"):
        await storage.store_message("BOB", "alice", "too many", 1.0, cap=2)
    assert [m.text for m in await storage.pending_messages("bob")] == ["0", "1"]
    # The cap is per recipient, and delivering makes room again.
    await storage.store_message("carol", "alice", "fine", 1.0, cap=2)
    await storage.delete_messages(kept[:1])
    await storage.store_message("bob", "alice", "2", 1.0, cap=2)
    assert [m.text for m in await storage.pending_messages("bob")] == ["1", "2"]


@pytest_twisted.ensureDeferred
async def test_cap_of_zero_keeps_nothing(storage):
    with pytest.raises(errors.MailboxFull):
        await storage.store_message("bob", "alice", "no", 1.0, cap=0)
    assert await storage.pending_messages("bob") == []


@pytest_twisted.ensureDeferred
async def test_recent_history_is_the_last_entries_oldest_first(storage):
    for n in range(5):
        await storage.append_history("#Room", "alice", f"m{n}", float(n))
    assert await storage.recent_history("#room", 3) == [
        HistoryEntry("#Room", "alice", f"m{n}", float(n)) for n in (2, 3, 4)
    ]


@pytest_twisted.ensureDeferred
async def test_recent_history_limits(storage):
    for n in range(3):
        await storage.append_history("#room", "alice", f"m{n}", float(n))
    assert [e.text for e in await storage.recent_history("#room", 10)] == ["m0", "m1", "m2"]
    assert await storage.recent_history("#room", 0) == []
    assert await storage.recent_history("#empty", 5) == []


@pytest_twisted.ensureDeferred
async def test_history_is_per_room_in_any_case(storage):
    await storage.append_history("#a", "alice", "in a", 1.0)
    await storage.append_history("#B", "bob", "in b", 2.0)
    await storage.append_history("#A", "carol", "in A", 3.0)
    assert await storage.recent_history("#A", 10) == [
        HistoryEntry("#a", "alice", "in a", 1.0),
        HistoryEntry("#A", "carol", "in A", 3.0),
    ]
    assert await storage.recent_history("#b", 10) == [HistoryEntry("#B", "bob", "in b", 2.0)]


@pytest_twisted.ensureDeferred
async def test_actions_are_kept_as_actions(storage):
    message_id = await storage.store_message("bob", "alice", "waves", 1.0, 10, True)
    await storage.append_history("#a", "alice", "says", 2.0)
    await storage.append_history("#a", "alice", "nods", 3.0, True)
    assert await storage.pending_messages("bob") == [
        StoredMessage(message_id, "bob", "alice", "waves", 1.0, True)
    ]
    assert [(e.text, e.action) for e in await storage.recent_history("#a", 5)] == [
        ("says", False),
        ("nods", True),
    ]


@pytest_twisted.ensureDeferred
async def test_failing_writes_fail_alone(storage):
    await storage.store_message("full", "x", "kept", 1.0, cap=1)
    # All asked for in one turn: for the SQL stores, one batch.
    results = await outcomes(
        [
            storage.create_account("alice", "hash"),
            storage.create_account("ALICE", "other"),
            storage.store_message("full", "x", "refused", 2.0, cap=1),
            storage.store_message("bob", "x", "fine", 3.0, cap=1),
            storage.store_message("bob", "x", "refused", 4.0, cap=1),
            storage.set_password_hash("nobody", "hash"),
            storage.append_history("#room", "x", "fine", 5.0),
        ]
    )
    assert results[0] is None
    assert results[1] is errors.AccountExists
    assert results[2] is errors.MailboxFull
    assert isinstance(results[3], int)
    assert results[4:] == [errors.MailboxFull, errors.NoSuchAccount, None]
    assert await storage.get_account("Alice") == Account("alice", "hash")
    assert [m.text for m in await storage.pending_messages("full")] == ["kept"]
    assert [m.text for m in await storage.pending_messages("bob")] == ["fine"]
    assert [e.text for e in await storage.recent_history("#room", 5)] == ["fine"]
