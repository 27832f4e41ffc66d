"""
Errors a client's request can cause, as data.

Each L{ChatError} carries what the refusal is about as fields (the nickname,
the room, the limit); C{str(error)} is a plain description for logs. Front
ends word errors for their own clients (the line protocol's C{! ...} lines
are in L{chatroute.frontends.syntax}), so that an IRC front end, say, can
answer with its own numerics.
"""

from dataclasses import dataclass, fields
from typing import ClassVar

NAME_RULE = "1-32 letters, digits, _ or -, starting with a letter"


class ChatError(Exception):
    """
    A request the server refuses.

    @cvar summary: the plain description, a format string over the error's fields.
    """

    summary: ClassVar[str] = "request refused"

    def __str__(self) -> str:
        """The plain description, with the error's fields."""
        values = {field.name: getattr(self, field.name) for field in fields(self)}  # type: ignore[arg-type]
        return self.summary.format(**values)


def _error(cls: type[ChatError]) -> type[ChatError]:
    """Make C{cls} a dataclass of its fields, compared and shown by them."""
    return dataclass(frozen=True, eq=True)(cls)


@_error
class InvalidEncoding(ChatError):
    """The line is not valid UTF-8."""

    summary = "invalid UTF-8"


@_error
class TelnetMangled(InvalidEncoding):
    """
    The line is not valid UTF-8, and telnet commands were taken out of it:
    the client's telnet turned bytes of non-ASCII characters into commands.
    """

    summary = "invalid UTF-8, mangled by the client's telnet"


@_error
class ControlCharacters(ChatError):
    """The line contains control characters (anything in C0, DEL or C1 but tab)."""

    summary = "control characters in the line"


@_error
class LineTooLong(ChatError):
    """The line is longer than the server's limit and was discarded."""

    limit: int
    summary = "line over {limit} bytes"


@_error
class MalformedLine(ChatError):
    """The line is not any form its front end knows; C{expected} says, in its words, what is."""

    expected: str
    summary = "{expected}"


@_error
class UnknownCommand(ChatError):
    """A command the server does not know."""

    command: str
    summary = "unknown command: {command}"


@_error
class EmptyMessage(ChatError):
    """A message with no text."""

    summary = "empty message"


@_error
class NotRegistered(ChatError):
    """The request needs a nickname and the connection has none yet."""

    summary = "no nickname yet"


@_error
class InvalidNickname(ChatError):
    """The nickname breaks the naming rule, L{NAME_RULE}."""

    nick: str
    summary = "invalid nickname: {nick!r}"


@_error
class InvalidRoomName(ChatError):
    """The room name breaks the naming rule: C{#} then L{NAME_RULE}."""

    room: str
    summary = "invalid room name: {room!r}"


@_error
class NicknameTaken(ChatError):
    """Another connection holds the nickname, as C{nick} (its holder's spelling)."""

    nick: str
    summary = "nickname taken: {nick}"


@_error
class NoSuchUser(ChatError):
    """
    No one online has the nickname (for a direct message: and no account
    either, as one would keep it).
    """

    nick: str
    summary = "no such user: {nick}"


@_error
class NoSuchRoom(ChatError):
    """No room has the name."""

    room: str
    summary = "no such room: {room}"


@_error
class NotInRoom(ChatError):
    """The user is not a member of the room."""

    room: str
    summary = "you are not in {room}"


@_error
class AlreadyInRoom(ChatError):
    """The user is already a member of the room."""

    room: str
    summary = "you are already in {room}"


@_error
class InternalError(ChatError):
    """Something unexpected failed on the server; the connection stays usable."""

    summary = "internal server error"


@_error
class BackplaneUnavailable(ChatError):
    """
    The request needs the other servers of the network, and this one cannot
    reach them now; nothing was done. It is worth trying again.
    """

    summary = "the other servers cannot be reached now; not done, try again"


@_error
class AccountExists(ChatError):
    """The nickname is already a registered account."""

    nick: str
    summary = "{nick} is already registered"


@_error
class NoSuchAccount(ChatError):
    """No account has the nickname."""

    nick: str
    summary = "no such account: {nick}"


@_error
class MailboxFull(ChatError):
    """The offline recipient has as many kept messages as the server allows."""

    nick: str
    summary = "{nick} is offline and has too many waiting messages"


@_error
class NameRegistered(ChatError):
    """A guest tried to take a nickname that is a registered account."""

    nick: str
    summary = "{nick} is a registered account"


@_error
class LoginFailed(ChatError):
    """The name or the password is wrong (which one is not said)."""

    summary = "wrong nickname or password"


@_error
class WrongPassword(ChatError):
    """The current password given to change it is wrong (the account is known)."""

    summary = "wrong password"


@_error
class LoginThrottled(ChatError):
    """Too many failed logins for the account or from the address; try after C{seconds}."""

    seconds: float
    summary = "too many failed logins; wait {seconds:.0f} s"


@_error
class NotLoggedIn(ChatError):
    """The request needs an account and the connection is not logged in to one."""

    summary = "not logged in to an account"


@_error
class AccountRequired(ChatError):
    """The server runs with --require-account and the user is a guest."""

    summary = "this server requires an account"


@_error
class BadPassword(ChatError):
    """The new password breaks the password rule: C{shortest} to C{longest} characters."""

    shortest: int
    longest: int
    summary = "a password must be {shortest} to {longest} characters"


@_error
class Flooding(ChatError):
    """
    The connection sends lines faster than the flood limit.

    @ivar line_start: the start of the refused line, safe to show, as the
        front end quotes it.
    """

    rate: float
    burst: int
    line_start: str
    summary = "over the flood limit of {rate:g} lines a second (bursts of {burst})"


@_error
class PasswordNeedsTLS(ChatError):
    """A password was sent over plain TCP from outside the machine, and the server forbids it."""

    summary = "passwords are accepted only over TLS"


@_error
class ServerPasswordRequired(ChatError):
    """The server has a connect password, and the connection has not given it yet."""

    summary = "this server has a password: give it first"


@_error
class WrongServerPassword(ChatError):
    """The connection gave a wrong server password; it is closed."""

    summary = "wrong server password"


@_error
class NotReading(ChatError):
    """The recipient stopped reading; the server disconnected it."""

    nick: str
    summary = "{nick} is not reading and was disconnected"


@_error
class ServerFull(ChatError):
    """The server has as many connections as it allows; this one is closed."""

    limit: int
    summary = "the server is full ({limit} connections)"


@_error
class TooManyConnections(ChatError):
    """The address has as many connections as one address may; this one is closed."""

    address: str
    limit: int
    summary = "too many connections from {address} (at most {limit})"


@_error
class OperatorRequired(ChatError):
    """The request needs the user to be an operator of the room, and they are not."""

    room: str
    summary = "you are not an operator of {room}"


@_error
class NoSuchMember(ChatError):
    """The user the request names is online but not a member of the room."""

    room: str
    nick: str
    summary = "{nick} is not in {room}"


@_error
class AlreadyOperator(ChatError):
    """The member is already an operator of the room."""

    room: str
    nick: str
    summary = "{nick} is already an operator of {room}"


@_error
class NotOperator(ChatError):
    """The member whose operator status is to be taken away has none."""

    room: str
    nick: str
    summary = "{nick} is not an operator of {room}"


@_error
class AlreadyVoiced(ChatError):
    """The member already has a voice in the room."""

    room: str
    nick: str
    summary = "{nick} already has a voice in {room}"


@_error
class NotVoiced(ChatError):
    """The member whose voice is to be taken away has none."""

    room: str
    nick: str
    summary = "{nick} has no voice in {room}"


@_error
class Moderated(ChatError):
    """The room is moderated, and the sender is neither an operator nor voiced."""

    room: str
    summary = "{room} is moderated: only operators and voiced members send"


@_error
class ModeUnchanged(ChatError):
    """The room's mode C{mode} already is C{on} (set) or not."""

    room: str
    mode: str
    on: bool
    summary = "{room}: {mode} is already {on}"


@_error
class BannedFromRoom(ChatError):
    """The user's nickname is banned from the room, so they cannot join it."""

    room: str
    summary = "you are banned from {room}"


@_error
class AlreadyBanned(ChatError):
    """The nickname is already banned from the room."""

    room: str
    nick: str
    summary = "{nick} is already banned from {room}"


@_error
class NotBanned(ChatError):
    """The nickname to unban is not banned from the room."""

    room: str
    nick: str
    summary = "{nick} is not banned from {room}"


@_error
class TopicTooLong(ChatError):
    """The topic is longer than C{limit} characters."""

    limit: int
    summary = "topic over {limit} characters"


@_error
class ReasonTooLong(ChatError):
    """The reason given for a kick is longer than C{limit} characters."""

    limit: int
    summary = "reason over {limit} characters"
