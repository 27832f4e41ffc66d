"""
Where chatroute keeps accounts, offline messages and room history.

Three implementations of L{chatroute.core.interfaces.IStorage}:
L{chatroute.storage.memory.MemoryStorage}, for tests and for running without
a database; L{chatroute.storage.sqlite.SQLiteStorage}, the default, opened
with L{chatroute.storage.sqlite.open_sqlite}; and
L{chatroute.storage.postgres.PostgresStorage}, opened with
L{chatroute.storage.postgres.open_postgres}. The two SQL stores share their
queries, schema versioning (L{chatroute.storage.sql}) and group commit
(L{chatroute.storage.batch}).
"""

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def name_key(name: str) -> str:
    """
    The form names (accounts, recipients, rooms) are compared and indexed in.

    Only ASCII letters are folded, as L{chatroute.core.interfaces.IStorage}
    promises; C{str.lower} would also fold other scripts (U+212A KELVIN SIGN
    to "k"). Every valid name is ASCII, and for those C{str.lower} is the
    same and faster: the router keys every message's recipient with this.
    A name already in lower case is its own key, which spares a copy of
    every such user's name.
    """
    if name.islower():
        return name
    return name.lower() if name.isascii() else name.translate(_ASCII_LOWER)
