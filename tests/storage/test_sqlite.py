"""
SQLite's own promises: a write-ahead log, a copy of the database kept
before an upgrade, the real upgrade from v1, nodes started together on one
file taking turns at creating or upgrading it, and durability across kill -9.
(The schema rules it shares with PostgreSQL are in test_sql.py.)
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.logger import capturedLogs

from chatroute.core.interfaces import HistoryEntry
from chatroute.storage import sql
from chatroute.storage import sqlite as sqlite_storage
from chatroute.storage.sql import Schema
from chatroute.storage.sqlite import CURRENT_SCHEMA, SQLiteStorage, open_sqlite

ROOT = Path(__file__).resolve().parent.parent.parent


def stored_version(path: Path) -> int:
    with sqlite3.connect(path) as connection:
        (version,) = connection.execute("SELECT version FROM version").fetchone()
    return version


def table_names(path: Path) -> set[str]:
    with sqlite3.connect(path) as connection:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {name for (name,) in rows}


@pytest.fixture
def db(tmp_path) -> Path:
    return tmp_path / "chat.db"


def reopen(path: Path, schema: Schema = CURRENT_SCHEMA) -> SQLiteStorage:
    return open_sqlite(str(path), reactor, schema)


@pytest_twisted.ensureDeferred
async def test_new_database_uses_a_write_ahead_log(db):
    await (reopen(db)).close()
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)


@pytest_twisted.ensureDeferred
async def test_the_version_is_read_under_the_write_lock(db, monkeypatch):
    # So a node started beside this one cannot create the database between
    # this one's look and its creation: it waits, then finds it done.
    refused = []

    def look(txn: Any, tables: Any, where: str) -> int | None:
        other = sqlite3.connect(db, isolation_level=None, timeout=0)
        try:
            other.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as error:
            refused.append(error.sqlite_errorcode)
        finally:
            other.close()
        return real_look(txn, tables, where)

    real_look = sql._stored_version
    monkeypatch.setattr(sql, "_stored_version", look)
    await reopen(db).close()
    assert refused == [sqlite3.SQLITE_BUSY]
    assert stored_version(db) == CURRENT_SCHEMA.version


@pytest_twisted.ensureDeferred
async def test_a_new_file_another_process_is_writing_is_switched_to_wal_once_it_is_done(
    db, monkeypatch
):
    # As another node switching it holds the write lock. SQLite refuses the
    # switch at once, not after the busy timeout, while it does.
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    pauses = []

    def other_is_done(seconds: float) -> None:
        pauses.append(seconds)
        if other.in_transaction:
            other.execute("COMMIT")

    monkeypatch.setattr(sqlite_storage, "sleep", other_is_done)
    try:
        await reopen(db).close()
    finally:
        other.close()
    assert len(pauses) == 1
    assert stored_version(db) == CURRENT_SCHEMA.version
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_a_file_another_process_writes_past_the_busy_timeout_is_refused_as_locked(db, monkeypatch):
    monkeypatch.setattr(sqlite_storage, "BUSY_TIMEOUT", 0.05)
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            open_sqlite(str(db), reactor)
    finally:
        other.close()


# Prepares the file given once it reads a line: the test lets them all go at
# one instant, as nodes started together on one machine, their imports done.
PREPARER = """
import sys
from chatroute.storage.sqlite import CURRENT_SCHEMA, _prepare_file

print("ready", flush=True)
sys.stdin.readline()
_prepare_file(sys.argv[1], CURRENT_SCHEMA)
"""


def prepare_at_once(path: Path, processes: int = 4) -> list[str]:
    """Prepare C{path} in several processes at once; the stderr of each that failed."""
    started = [
        subprocess.Popen(
            [sys.executable, "-c", PREPARER, str(path)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    try:
        for process in started:
            assert process.stdout is not None and process.stdout.readline() == "ready\n"
        for process in started:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        failed = []
        for process in started:
            _, errors = process.communicate(timeout=30)
            if process.returncode != 0:
                failed.append(errors)
        return failed
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
                process.wait()


def test_several_processes_opening_one_new_file_at_once_all_succeed(db):
    failed = prepare_at_once(db)
    assert not failed, "\n".join(failed)
    assert stored_version(db) == CURRENT_SCHEMA.version


@pytest_twisted.ensureDeferred
async def test_an_upgrade_keeps_the_old_database_beside_it(db, tmp_path):
    directory = tmp_path / "schema"
    directory.mkdir()
    (directory / "v1.sql").write_text(CURRENT_SCHEMA.create_script())
    (directory / "upgrade-v1-to-v2.sql").write_text("CREATE TABLE notes (text TEXT NOT NULL);")
    await reopen(db, Schema(directory, 1)).close()
    await reopen(db, Schema(directory, 2)).close()
    backup = db.with_name("chat.db.backup-v1")
    assert stored_version(backup) == 1
    assert "notes" not in table_names(backup)
    assert "notes" in table_names(db)


# The tables of schema v1 that v2 changes, with a message and a history entry.
V1_TABLES = """
CREATE TABLE version (version INTEGER NOT NULL);
INSERT INTO version (version) VALUES (1);
CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT, recipient_key TEXT NOT NULL,
    recipient TEXT NOT NULL, sender TEXT NOT NULL, text TEXT NOT NULL, sent_at REAL NOT NULL);
CREATE TABLE history (id INTEGER PRIMARY KEY, room_key TEXT NOT NULL, room TEXT NOT NULL,
    sender TEXT NOT NULL, text TEXT NOT NULL, sent_at REAL NOT NULL);
INSERT INTO messages (recipient_key, recipient, sender, text, sent_at)
    VALUES ('bob', 'bob', 'alice', 'kept', 1.0);
INSERT INTO history (room_key, room, sender, text, sent_at)
    VALUES ('#a', '#a', 'alice', 'old', 2.0);
"""


@pytest_twisted.ensureDeferred
async def test_v1_is_upgraded_to_actions_keeping_messages_and_history(db):
    with sqlite3.connect(db) as connection:
        connection.executescript(V1_TABLES)
    storage = reopen(db)
    (kept,) = await storage.pending_messages("bob")
    assert (kept.text, kept.action) == ("kept", False)
    await storage.append_history("#a", "alice", "waves", 3.0, True)
    assert await storage.recent_history("#a", 5) == [
        HistoryEntry("#a", "alice", "old", 2.0),
        HistoryEntry("#a", "alice", "waves", 3.0, True),
    ]
    await storage.close()
    assert stored_version(db) == 2


def test_several_processes_upgrading_one_file_at_once_all_succeed_and_keep_its_backup(db):
    with sqlite3.connect(db) as connection:
        # In WAL, as an older chatroute left it.
        connection.execute("PRAGMA journal_mode = WAL")
        connection.executescript(V1_TABLES)
    failed = prepare_at_once(db)
    assert not failed, "\n".join(failed)
    assert stored_version(db) == 2
    assert stored_version(db.with_name("chat.db.backup-v1")) == 1


@pytest_twisted.ensureDeferred
async def test_an_upgrade_script_may_hold_triggers_semicolons_in_text_and_lack_its_last(
    db, tmp_path
):
    directory = tmp_path / "schema"
    directory.mkdir()
    (directory / "v1.sql").write_text(CURRENT_SCHEMA.create_script())
    (directory / "upgrade-v1-to-v2.sql").write_text(
        "CREATE TABLE notes (text TEXT NOT NULL DEFAULT 'a;b'); -- one; two\n"
        "CREATE TRIGGER noted AFTER INSERT ON accounts BEGIN\n"
        "    INSERT INTO notes (text) VALUES ('new;account');\n"
        "    INSERT INTO notes (text) VALUES ('end;');\n"
        "END;\n"
        "INSERT INTO notes DEFAULT VALUES\n"
        "-- the end"
    )
    await reopen(db, Schema(directory, 1)).close()
    storage = reopen(db, Schema(directory, 2))
    await storage.create_account("alice", "hash")
    await storage.close()
    with sqlite3.connect(db) as connection:
        notes = connection.execute("SELECT text FROM notes ORDER BY rowid").fetchall()
    assert notes == [("a;b",), ("new;account",), ("end;",)]
    assert stored_version(db) == 2


# Keeps 20 writes in flight, prints each one's number once acknowledged, and
# kills itself with SIGKILL at the 500th acknowledgement, writes still pending.
KILLED_WRITER = """
import os, signal, sys
from itertools import count
from twisted.internet import task
from twisted.internet.defer import Deferred
from chatroute.storage.sqlite import open_sqlite

async def main(reactor, path):
    storage = open_sqlite(path, reactor)
    numbers = count()
    acknowledged = 0

    def write():
        n = next(numbers)
        storage.append_history("#room", "writer", str(n), 0.0).addCallback(done, n)

    def done(_, n):
        nonlocal acknowledged
        sys.stdout.write(f"{n}\\n")
        sys.stdout.flush()
        acknowledged += 1
        if acknowledged == 500:
            os.kill(os.getpid(), signal.SIGKILL)
        write()

    for _ in range(20):
        write()
    await Deferred()

task.react(lambda reactor: Deferred.fromCoroutine(main(reactor, sys.argv[1])))
"""


@pytest_twisted.ensureDeferred
async def test_kill_9_loses_nothing_acknowledged(db):
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_WRITER, str(db)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    acknowledged = set(killed.stdout.split())
    assert len(acknowledged) == 500
    storage = reopen(db)
    kept = {entry.text for entry in await storage.recent_history("#room", 10_000)}
    await storage.close()
    assert acknowledged <= kept


@pytest_twisted.ensureDeferred
async def test_a_locked_database_fails_its_writes_logged_and_later_writes_succeed(db, monkeypatch):
    # Another process (a backup, say) holding the write lock past the busy timeout.
    monkeypatch.setattr(sqlite_storage, "BUSY_TIMEOUT", 0.05)
    storage = reopen(db)
    try:
        await storage.append_history("#lobby", "alice", "before", 1.0)
        other = sqlite3.connect(db, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        try:
            with (
                capturedLogs() as events,
                pytest.raises(sqlite3.OperationalError, match="locked"),
            ):
                await storage.append_history("#lobby", "alice", "refused", 2.0)
            # Reads go on meanwhile (WAL).
            assert len(await storage.recent_history("#lobby", 10)) == 1
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert any(event.get("log_failure") for event in events), "logged with its traceback"
        await storage.append_history("#lobby", "alice", "after", 3.0)
        history = await storage.recent_history("#lobby", 10)
        assert [entry.text for entry in history] == ["before", "after"]
    finally:
        await storage.close()
