"""
An L{IStorage} that keeps everything in memory, for tests and for running
without a database: nothing survives the process.
"""

from collections.abc import Sequence
from itertools import count

from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from chatroute.core.errors import AccountExists, MailboxFull, NoSuchAccount
from chatroute.core.interfaces import Account, HistoryEntry, IStorage, StoredMessage
from chatroute.storage import name_key


@implementer(IStorage)
class MemoryStorage:
    """
    L{IStorage} in dictionaries. Every Deferred it returns has already fired.
    """

    def __init__(self) -> None:
        self._accounts: dict[str, Account] = {}
        # Kept messages by recipient key, each recipient's by id in id order,
        # and the recipient key of every kept message id, for deletion.
        self._mailboxes: dict[str, dict[int, StoredMessage]] = {}
        self._recipient_of: dict[int, str] = {}
        self._ids = count(1)
        self._history: dict[str, list[HistoryEntry]] = {}

    def create_account(self, name: str, password_hash: str) -> Deferred[None]:
        """See L{IStorage.create_account}."""
        key = name_key(name)
        if key in self._accounts:
            return fail(AccountExists(name))
        self._accounts[key] = Account(name, password_hash)
        return succeed(None)

    def get_account(self, name: str) -> Deferred[Account | None]:
        """See L{IStorage.get_account}."""
        return succeed(self._accounts.get(name_key(name)))

    def set_password_hash(self, name: str, password_hash: str) -> Deferred[None]:
        """See L{IStorage.set_password_hash}."""
        key = name_key(name)
        account = self._accounts.get(key)
        if account is None:
            return fail(NoSuchAccount(name))
        self._accounts[key] = Account(account.name, password_hash)
        return succeed(None)

    def store_message(
        self, recipient: str, sender: str, text: str, sent_at: float, cap: int, action: bool = False
    ) -> Deferred[int]:
        """See L{IStorage.store_message}."""
        key = name_key(recipient)
        if len(self._mailboxes.get(key, ())) >= cap:
            return fail(MailboxFull(recipient))
        message_id = next(self._ids)
        self._mailboxes.setdefault(key, {})[message_id] = StoredMessage(
            message_id, recipient, sender, text, sent_at, action
        )
        self._recipient_of[message_id] = key
        return succeed(message_id)

    def pending_messages(self, recipient: str) -> Deferred[list[StoredMessage]]:
        """See L{IStorage.pending_messages}."""
        return succeed(list(self._mailboxes.get(name_key(recipient), {}).values()))

    def delete_messages(self, ids: Sequence[int]) -> Deferred[None]:
        """See L{IStorage.delete_messages}."""
        for message_id in ids:
            key = self._recipient_of.pop(message_id, None)
            if key is not None:
                mailbox = self._mailboxes[key]
                del mailbox[message_id]
                if not mailbox:
                    del self._mailboxes[key]
        return succeed(None)

    def append_history(
        self, room: str, sender: str, text: str, sent_at: float, action: bool = False
    ) -> Deferred[None]:
        """See L{IStorage.append_history}."""
        entry = HistoryEntry(room, sender, text, sent_at, action)
        self._history.setdefault(name_key(room), []).append(entry)
        return succeed(None)

    def recent_history(self, room: str, limit: int) -> Deferred[list[HistoryEntry]]:
        """See L{IStorage.recent_history}."""
        if limit <= 0:
            return succeed([])
        return succeed(self._history.get(name_key(room), [])[-limit:])

    def close(self) -> Deferred[None]:
        """See L{IStorage.close}; there is nothing to release."""
        return succeed(None)
