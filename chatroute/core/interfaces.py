"""The seams between the router and the front ends that connect people to it."""

from collections.abc import Sequence
from dataclasses import dataclass

from twisted.internet.defer import Deferred
from zope.interface import Interface

from chatroute.core.events import Event


class IParticipant(Interface):
    """
    One connected person as the router sees them: something events reach.

    The line protocol implements this; a WebSocket front end would too.
    """

    def deliver(event: Event) -> None:
        """
        Hand C{event} to the person. Must not block; may queue the event.
        """

    def close(reason: str) -> None:
        """
        Tell the person why, then end their connection. The router has
        already forgotten the session.
        """


@dataclass(frozen=True, slots=True)
class Account:
    """A registered nickname: C{name} as registered, and its password hash."""

    name: str
    password_hash: str


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A direct message kept for an offline account; C{sent_at} is POSIX seconds."""

    id: int
    recipient: str
    sender: str
    text: str
    sent_at: float


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """A room message as kept in the room's history; C{sent_at} is POSIX seconds."""

    room: str
    sender: str
    text: str
    sent_at: float


class IStorage(Interface):
    """
    Everything chatroute keeps across restarts.

    Names (accounts, recipients, rooms) are matched ignoring ASCII letter
    case. Every method returns a Deferred; a write's Deferred fires only once
    the write is durable (committed), so an acknowledgement sent from its
    callback survives a crash of the server process.
    """

    def create_account(name: str, password_hash: str) -> Deferred[None]:
        """
        Register C{name}. Deferred firing with None, failing with
        L{chatroute.core.errors.AccountExists} if the name is registered in any case.
        """

    def get_account(name: str) -> Deferred[Account | None]:
        """Deferred firing with the L{Account} named C{name}, or None."""

    def set_password_hash(name: str, password_hash: str) -> Deferred[None]:
        """
        Replace the account's password hash. Deferred firing with None,
        failing with L{chatroute.core.errors.NoSuchAccount}.
        """

    def store_message(
        recipient: str, sender: str, text: str, sent_at: float, cap: int
    ) -> Deferred[int]:
        """
        Keep a direct message for C{recipient}. Deferred firing with the
        message's id once it is on disk, failing with
        L{chatroute.core.errors.MailboxFull} if C{cap} messages are already kept
        for the recipient.
        """

    def pending_messages(recipient: str) -> Deferred[list[StoredMessage]]:
        """Deferred firing with every message kept for C{recipient}, oldest first."""

    def delete_messages(ids: Sequence[int]) -> Deferred[None]:
        """Forget the kept messages with these ids (delivered). Deferred firing with None."""

    def append_history(room: str, sender: str, text: str, sent_at: float) -> Deferred[None]:
        """Add a room message to the room's history. Deferred firing with None once durable."""

    def recent_history(room: str, limit: int) -> Deferred[list[HistoryEntry]]:
        """Deferred firing with the last C{limit} messages of C{room}, oldest first."""

    def close() -> Deferred[None]:
        """Finish pending writes and release the store. Deferred firing with None."""
