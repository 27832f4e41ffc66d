"""
What the SQL stores share (chatroute.storage.sql): the placeholder and error
translation of a Txn, and the versioned schema, created, upgraded and
refused alike in SQLite and in a real PostgreSQL.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.logger import capturedLogs

from chatroute.core.interfaces import Account, StoredMessage
from chatroute.storage import sqlite
from chatroute.storage.sql import (
    SCHEMA_VERSION,
    Dialect,
    IntegrityViolation,
    Schema,
    SchemaError,
    SQLStorage,
    Txn,
)


class RecordingCursor:
    """A DB-API cursor that keeps what it is asked to run, and may fail as told."""

    rowcount = 0

    def __init__(self, fails_with: Exception | None = None) -> None:
        self.executed: list[tuple[str, Any]] = []
        self.fails_with = fails_with

    def execute(self, sql, parameters=()):
        self.executed.append((sql, parameters))
        if self.fails_with is not None:
            raise self.fails_with

    def executemany(self, sql, parameters):
        self.executed.append((sql, list(parameters)))

    def fetchone(self):
        return None

    def fetchall(self):
        return []


class DriverIntegrityError(Exception):
    pass


PERCENT = Dialect("test", "%s", DriverIntegrityError, begin=None)


def test_placeholders_become_the_drivers():
    cursor = RecordingCursor()
    txn = Txn(cursor, PERCENT)
    txn.execute("SELECT x FROM t WHERE a = ? AND b = ?", (1, 2))
    txn.executemany("DELETE FROM t WHERE id = ?", [(1,), (2,)])
    assert cursor.executed == [
        ("SELECT x FROM t WHERE a = %s AND b = %s", (1, 2)),
        ("DELETE FROM t WHERE id = %s", [(1,), (2,)]),
    ]


def test_question_marks_stay_for_sqlite():
    cursor = RecordingCursor()
    Txn(cursor, sqlite.SQLITE).execute("SELECT ?", (1,))
    assert cursor.executed == [("SELECT ?", (1,))]


def test_the_drivers_integrity_error_is_a_violation():
    txn = Txn(RecordingCursor(fails_with=DriverIntegrityError("duplicate key")), PERCENT)
    with pytest.raises(IntegrityViolation, match="duplicate key"):
        txn.execute("INSERT INTO t VALUES (?)", (1,))


def test_other_driver_errors_pass_through():
    txn = Txn(RecordingCursor(fails_with=OSError("disk")), PERCENT)
    with pytest.raises(OSError, match="disk"):
        txn.execute("INSERT INTO t VALUES (?)", (1,))


# The schema, in each SQL database.


class SQLiteDatabase:
    """An SQLite database file, as the schema tests see it."""

    shipped = sqlite.CURRENT_SCHEMA
    upgrade_error = sqlite3.OperationalError

    def __init__(self, path: Path) -> None:
        self.path = path

    def open(self, schema: Schema | None = None) -> SQLStorage:
        return sqlite.open_sqlite(str(self.path), reactor, schema or self.shipped)

    def query(self, sql: str) -> list[tuple]:
        connection = sqlite3.connect(self.path)
        try:
            with connection:
                return connection.execute(sql).fetchall()
        finally:
            connection.close()

    def tables(self) -> set[str]:
        return {name for (name,) in self.query("SELECT name FROM sqlite_master WHERE type='table'")}


class PostgresDatabase:
    """A database of the private PostgreSQL server, as the schema tests see it."""

    def __init__(self, url: str) -> None:
        import psycopg

        from chatroute.storage import postgres

        self.url = url
        self.shipped = postgres.CURRENT_SCHEMA
        self.upgrade_error = psycopg.errors.UndefinedTable
        self._postgres = postgres
        self._psycopg = psycopg

    def open(self, schema: Schema | None = None) -> SQLStorage:
        return self._postgres.open_postgres(self.url, reactor, schema or self.shipped)

    def query(self, sql: str) -> list[tuple]:
        with self._psycopg.connect(self.url) as connection:
            cursor = connection.execute(sql)
            return cursor.fetchall() if cursor.description else []

    def tables(self) -> set[str]:
        rows = self.query(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        )
        return {name for (name,) in rows}


@pytest.fixture(params=["sqlite", "postgres"])
def database(request, tmp_path):
    if request.param == "sqlite":
        return SQLiteDatabase(tmp_path / "chat.db")
    return PostgresDatabase(request.getfixturevalue("postgres_url"))


def stored_version(database) -> int:
    ((version,),) = database.query("SELECT version FROM version")
    return version


@pytest.fixture
def schemas(tmp_path, database) -> Path:
    """A schema directory going up to v3: v1 with the shipped tables, then two upgrades."""
    directory = tmp_path / "schema"
    directory.mkdir()
    (directory / "v1.sql").write_text(database.shipped.create_script())
    (directory / "upgrade-v1-to-v2.sql").write_text("CREATE TABLE notes (text TEXT NOT NULL);")
    # Runs only after v1 to v2 has made the table; ends with a comment, no newline.
    (directory / "upgrade-v2-to-v3.sql").write_text(
        "INSERT INTO notes (text) VALUES ('written by v3') -- no semicolon"
    )
    return directory


@pytest_twisted.ensureDeferred
async def test_new_database_records_the_schema_version(database):
    with capturedLogs() as events:
        await database.open().close()
    assert stored_version(database) == SCHEMA_VERSION == database.shipped.version
    assert any("created" in event["log_format"] for event in events)


@pytest_twisted.ensureDeferred
async def test_upgrades_apply_in_order_and_keep_the_data(database, schemas):
    storage = database.open(Schema(schemas, 1))
    await storage.create_account("alice", "hash")
    await storage.close()
    with capturedLogs() as events:
        storage = database.open(Schema(schemas, 3))
    assert await storage.get_account("alice") == Account("alice", "hash")
    await storage.close()
    assert stored_version(database) == 3
    assert database.query("SELECT text FROM notes") == [("written by v3",)]
    assert any("upgraded" in event["log_format"] for event in events)


@pytest_twisted.ensureDeferred
async def test_new_database_is_created_at_the_target_version_directly(database, schemas):
    (schemas / "v2.sql").write_text(
        database.shipped.create_script() + "\nCREATE TABLE extra (x INTEGER);"
    )
    await database.open(Schema(schemas, 2)).close()
    assert stored_version(database) == 2
    assert "extra" in database.tables()
    assert "notes" not in database.tables()


@pytest_twisted.ensureDeferred
async def test_missing_upgrade_leaves_the_database_alone(database, schemas):
    await database.open(Schema(schemas, 1)).close()
    with pytest.raises(SchemaError, match=r"upgrade-v3-to-v4\.sql"):
        database.open(Schema(schemas, 4))
    assert stored_version(database) == 1
    assert "notes" not in database.tables()


@pytest_twisted.ensureDeferred
async def test_failing_upgrade_rolls_back_every_step(database, schemas):
    await database.open(Schema(schemas, 1)).close()
    (schemas / "upgrade-v2-to-v3.sql").write_text("INSERT INTO no_such_table VALUES (1);")
    with pytest.raises(database.upgrade_error, match="no_such_table"):
        database.open(Schema(schemas, 3))
    assert stored_version(database) == 1
    assert "notes" not in database.tables()
    # Fixed, the upgrade then goes through.
    (schemas / "upgrade-v2-to-v3.sql").write_text("SELECT 1;")
    await database.open(Schema(schemas, 3)).close()
    assert stored_version(database) == 3


@pytest_twisted.ensureDeferred
async def test_newer_database_is_refused(database):
    await database.open().close()
    database.query(f"UPDATE version SET version = {SCHEMA_VERSION + 1}")
    with pytest.raises(SchemaError, match="newer than this chatroute"):
        database.open()


def test_other_database_is_refused(database):
    database.query("CREATE TABLE something (x INTEGER)")
    with pytest.raises(SchemaError, match="not a chatroute database"):
        database.open()


@pytest_twisted.ensureDeferred
async def test_everything_is_there_after_close_and_reopen(database):
    storage = database.open()
    await storage.create_account("Alice", "hash")
    message_id = await storage.store_message("bob", "Alice", "hi", 1.0, cap=5)
    await storage.append_history("#room", "Alice", "hello", 2.0)
    # Asked for but not waited for: close() commits them.
    storage.append_history("#room", "Alice", "bye", 3.0)
    storage.set_password_hash("alice", "new hash")
    await storage.close()
    storage = database.open()
    assert await storage.get_account("ALICE") == Account("Alice", "new hash")
    assert await storage.pending_messages("bob") == [
        StoredMessage(message_id, "bob", "Alice", "hi", 1.0)
    ]
    assert [e.text for e in await storage.recent_history("#room", 5)] == ["hello", "bye"]
    await storage.close()
