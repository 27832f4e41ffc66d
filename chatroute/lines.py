"""
The line protocol's syntax: text lines in, commands out; events in, text lines out.

Pure functions over C{str}; no I/O and no state. C{docs/protocol.md} is the
contract these implement.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass

from chatroute.errors import ControlCharacters, EmptyMessage, MalformedLine, UnknownCommand
from chatroute.events import (
    DirectMessage,
    Event,
    Joined,
    Left,
    Notice,
    Registered,
    Renamed,
    RoomList,
    RoomMessage,
    UserList,
)


@dataclass(frozen=True, slots=True)
class Register:
    """C{#alice}: claim a nickname, or change to it."""

    nick: str


@dataclass(frozen=True, slots=True)
class SendDirect:
    """C{@bob:hello}: a message to one user."""

    to: str
    text: str


@dataclass(frozen=True, slots=True)
class SendRoom:
    """C{@#lobby:hello}: a message to a room."""

    room: str
    text: str


@dataclass(frozen=True, slots=True)
class Join:
    """C{/join #lobby}."""

    room: str


@dataclass(frozen=True, slots=True)
class Leave:
    """C{/leave #lobby}."""

    room: str


@dataclass(frozen=True, slots=True)
class ListRooms:
    """C{/rooms}."""


@dataclass(frozen=True, slots=True)
class Who:
    """C{/who} (C{room} is None) or C{/who #lobby}."""

    room: str | None


@dataclass(frozen=True, slots=True)
class Help:
    """C{/help}."""


@dataclass(frozen=True, slots=True)
class Quit:
    """C{/quit}."""


Command = Register | SendDirect | SendRoom | Join | Leave | ListRooms | Who | Help | Quit

HELP = (
    "#name              register as name, or change your name",
    "@name:message      send a direct message",
    "@#room:message     send a message to a room you are in",
    "/join #room        join a room, creating it if needed",
    "/leave #room       leave a room",
    "/rooms             list rooms and their member counts",
    "/who [#room]       list online users, or a room's members",
    "/help              show this help",
    "/quit              say goodbye and close the connection",
)

# C0 controls but tab, DEL, and C1 controls: they would let one user corrupt
# another's terminal.
CONTROL_CHARACTERS = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def _room_argument(command: str, argument: str) -> str:
    if not argument or " " in argument:
        raise MalformedLine(f"usage: /{command} #room")
    return argument


def _no_argument(command: str, argument: str) -> None:
    if argument:
        raise MalformedLine(f"usage: /{command}")


def _parse_command(line: str) -> Command:
    name, _, argument = line[1:].partition(" ")
    name = name.lower()
    argument = argument.strip()
    match name:
        case "join":
            return Join(_room_argument(name, argument))
        case "leave":
            return Leave(_room_argument(name, argument))
        case "who":
            return Who(_room_argument(name, argument) if argument else None)
        case "rooms":
            _no_argument(name, argument)
            return ListRooms()
        case "help":
            _no_argument(name, argument)
            return Help()
        case "quit":
            _no_argument(name, argument)
            return Quit()
    raise UnknownCommand(name)


def parse_line(line: str) -> Command | None:
    """
    Parse one line from a client (without its line ending).

    @return: the command, or None for a blank line, which is ignored.
    @raise ChatError: the line is malformed; the error says how.
    """
    if CONTROL_CHARACTERS.search(line):
        raise ControlCharacters()
    line = line.strip()
    if not line:
        return None
    first = line[0]
    if first == "@":
        target, colon, text = line[1:].partition(":")
        target = target.strip()
        if not colon or not target:
            raise MalformedLine("expected @name:message or @#room:message")
        text = text.strip()
        if not text:
            raise EmptyMessage()
        if target[0] == "#":
            return SendRoom(target, text)
        return SendDirect(target, text)
    if first == "#":
        return Register(line[1:].strip())
    if first == "/":
        return _parse_command(line)
    raise MalformedLine("unrecognised line: start with #name, @name:, @#room: or / (try /help)")


def _listing(title: str, items: Sequence[str]) -> str:
    if not items:
        return f"* {title} (0)"
    return f"* {title} ({len(items)}): {', '.join(items)}"


def format_event(event: Event) -> str:
    """Render C{event} as one line of text, without the line ending."""
    match event:
        case DirectMessage(sender, text):
            return f"<{sender}> {text}"
        case RoomMessage(room, sender, text):
            return f"{room} <{sender}> {text}"
        case Joined(room, nick):
            return f"* {nick} joined {room}"
        case Left(room, nick, disconnected):
            return f"* {nick} left {room}{' (disconnected)' if disconnected else ''}"
        case Renamed(old, new):
            return f"* {old} is now {new}"
        case Registered(nick):
            return f"* registered as {nick}"
        case UserList(room, nicks):
            return _listing(room or "online", nicks)
        case RoomList(rooms):
            return _listing("rooms", [f"{name} {count}" for name, count in rooms])
        case Notice(text):
            return f"* {text}"
    raise TypeError(f"not an event: {event!r}")
