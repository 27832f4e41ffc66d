"""The seams between the core, the front ends that connect people to it, and storage."""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface

from chatroute.core.commands import Command
from chatroute.core.errors import ChatError
from chatroute.core.events import Event

if TYPE_CHECKING:
    from chatroute.core.directory import Presence, Room
    from chatroute.core.events import RoomMessage
    from chatroute.core.router import Router


class IParticipant(Interface):
    """
    One connected person as the router sees them: something events reach.

    The line protocol implements this; a WebSocket front end would too.
    """

    def deliver(event: Event) -> None:
        """
        Hand C{event} to the person. Must not block; may queue the event.
        """

    def reply_error(error: ChatError) -> None:
        """Tell the person that their request failed, and why."""

    def close(reason: str) -> None:
        """
        Tell the person why, then end their connection. The router has
        already forgotten them.
        """


class IDirectory(Interface):
    """
    Who holds which nickname, and which rooms exist: the router's one way to
    users and rooms (L{chatroute.core.directory}). Names are matched
    ignoring ASCII letter case.
    """

    holders: "Mapping[str, Presence]" = Attribute(
        """
        Who holds each nickname, keyed by the nickname's L{name_key}: the
        same mapping for the directory's whole life, so the router may keep
        it at hand for the lookup every direct message makes.
        """
    )

    def holder(nick: str) -> "Presence | None":
        """Who holds C{nick}; None if no one."""

    def claim(presence: "Presence", nick: str) -> None:
        """C{presence} holds C{nick} from now on; the router checked it is free."""

    def release(nick: str) -> None:
        """Nobody holds C{nick} any more."""

    def online() -> "Iterable[Presence]":
        """Everyone holding a nickname."""

    def room(name: str) -> "Room | None":
        """The room named C{name}; None if there is none."""

    def open_room(name: str) -> "Room":
        """A new, empty room named C{name}; the router checked there is none."""

    def close_room(name: str) -> None:
        """The room named C{name} is gone."""

    def rooms() -> "Iterable[Room]":
        """Every room."""


class IBackplane(Interface):
    """
    What joins several nodes into one chat (L{chatroute.backplane}): the
    router consults it only where other nodes matter. With none (a single
    node) the router keeps every rule and all state to itself, synchronously.

    With one, the router's L{IDirectory} is the backplane's copy of the whole
    network: users of other nodes are L{Presence}s too, whose participant
    forwards direct messages to their node and ignores everything else (their
    own node delivers what their rooms say). Every change to names, presence
    and rooms is checked and ordered by the backplane, then applied on every
    node, this one too, through the router's C{apply_*} methods, in one order;
    each method here returns a Deferred firing once its change has been
    applied on this node, or failing with the L{ChatError} that refused it
    (L{chatroute.core.errors.BackplaneUnavailable} while the backplane
    cannot be reached).
    """

    directory = Attribute("The L{IDirectory} the router is to use: the network's users and rooms.")

    def attach(router: "Router") -> None:
        """The router that applies the network's changes on this node."""

    def claim(presence: "Presence", nick: str, account: bool, takeover: bool) -> Deferred[None]:
        """
        Give the participant C{nick} across the network, as an account if
        C{account}. Deferred failing with L{chatroute.core.errors.NicknameTaken}
        if a live participant elsewhere has it, unless C{takeover} (a login:
        that participant is then logged out).
        """

    def release(presence: "Presence", reason: str | None) -> None:
        """The participant is gone (disconnected): free its name and take it out of its rooms."""

    def set_away(presence: "Presence", message: str | None) -> Deferred[None]:
        """Mark the participant away with C{message} (None: back) across the network."""

    def mark_account(presence: "Presence") -> Deferred[None]:
        """The participant's nickname has just been made an account (it is in the store)."""

    def join(presence: "Presence", room: str, at: float) -> Deferred[None]:
        """Add the participant to the room, making the room (created C{at}) if it is new."""

    def leave(presence: "Presence", room: str, reason: str | None) -> Deferred[None]:
        """Take the participant out of the room."""

    def say(presence: "Presence", message: "RoomMessage") -> Deferred[None]:
        """Deliver a room message to every member, in the room's order."""

    def set_topic(presence: "Presence", room: str, topic: str | None, at: float) -> Deferred[None]:
        """Set or clear the room's topic (checked: the participant is an operator)."""

    def set_operator(presence: "Presence", room: str, nick: str, operator: bool) -> Deferred[None]:
        """Make the member C{nick} an operator of the room, or no longer."""

    def kick(presence: "Presence", room: str, nick: str, reason: str | None) -> Deferred[None]:
        """Put the member C{nick} out of the room."""

    def set_ban(presence: "Presence", room: str, nick: str, banned: bool) -> Deferred[None]:
        """Ban C{nick} from the room (kicking it if a member), or lift the ban."""

    def set_voice(presence: "Presence", room: str, nick: str, voiced: bool) -> Deferred[None]:
        """Give the member C{nick} a voice in the room, or take it away."""

    def set_room_mode(presence: "Presence", room: str, mode: str, on: bool) -> Deferred[None]:
        """Turn the room's mode C{mode} on or off (checked: the participant is an operator)."""

    def lock_mailbox(name: str) -> Deferred[str]:
        """
        Deferred firing with a token once this node alone may deliver the
        messages kept for the account C{name} (a lease, in case this node dies).
        """

    def unlock_mailbox(name: str, token: str) -> None:
        """Let others deliver C{name}'s kept messages again."""


class ILink(Interface):
    """
    A front end's connection, as its session writes to it and closes it.

    What is written is the front end's own encoding (L{IWireFormat}).
    """

    frontend = Attribute("The front end's name (C{str}: C{line}, C{web}, C{irc}), for monitoring.")

    def write(data: bytes) -> None:
        """Send C{data}: one or more encoded events or errors."""

    def write_all(items: list[bytes]) -> None:
        """Send each of C{items} in order, as few writes as the wire allows."""

    def pause_reading() -> None:
        """Read nothing more from the client until L{resume_reading}."""

    def resume_reading() -> None:
        """Read from the client again."""

    def close() -> None:
        """Close the connection once what was written is sent."""

    def abort() -> None:
        """Close the connection now, dropping what waits to be sent."""


class IWireFormat(Interface):
    """How a front end's lines become commands, and events and errors its bytes."""

    last_event = Attribute(
        "The event L{encode} gave last, if the format keeps it (else None): a"
        " session reuses C{last_encoding} for it without a call, as a room"
        " message reaches every member of a room in turn."
    )
    last_encoding = Attribute("What L{encode} gave for C{last_event} (C{bytes}).")

    def parse(line: bytes) -> Command | None:
        """
        The command in one line from the client; None for a line that asks
        for nothing (blank).

        @raise ChatError: the line is malformed; the error says how.
        """

    def encode(event: Event) -> bytes:
        """C{event} as the front end sends it."""

    def encode_error(error: ChatError) -> bytes:
        """C{error}, answering the client's request, as the front end sends it."""

    def help_lines() -> Sequence[str]:
        """The commands the client may send, a notice line each, as the front end words them."""

    def quote(line: bytes) -> str:
        """The start of C{line}, safe to show, for an error to say which line it refused."""


@dataclass(frozen=True, slots=True)
class Account:
    """A registered nickname: C{name} as registered, and its password hash."""

    name: str
    password_hash: str


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """
    A direct message kept for an offline account; C{sent_at} is POSIX
    seconds; C{action}: what the sender does (C{/me}), not says.
    """

    id: int
    recipient: str
    sender: str
    text: str
    sent_at: float
    action: bool = False


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """
    A room message as kept in the room's history; C{sent_at} is POSIX
    seconds; C{action}: what the sender does (C{/me}), not says.
    """

    room: str
    sender: str
    text: str
    sent_at: float
    action: bool = False


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
        recipient: str, sender: str, text: str, sent_at: float, cap: int, action: bool = False
    ) -> Deferred[int]:
        """
        Keep a direct message for C{recipient} (an action with C{action}). Deferred firing with the
        message's id once it is on disk, failing with
        L{chatroute.core.errors.MailboxFull} if C{cap} messages are already kept
        for the recipient.
        """

    def pending_messages(recipient: str) -> Deferred[list[StoredMessage]]:
        """Deferred firing with every message kept for C{recipient}, oldest first."""

    def delete_messages(ids: Sequence[int]) -> Deferred[None]:
        """Forget the kept messages with these ids (delivered). Deferred firing with None."""

    def append_history(
        room: str, sender: str, text: str, sent_at: float, action: bool = False
    ) -> Deferred[None]:
        """
        Add a room message (an action with C{action}) to the room's history.
        Deferred firing with None once durable.
        """

    def recent_history(room: str, limit: int) -> Deferred[list[HistoryEntry]]:
        """Deferred firing with the last C{limit} messages of C{room}, oldest first."""

    def close() -> Deferred[None]:
        """Finish pending writes and release the store. Deferred firing with None."""
