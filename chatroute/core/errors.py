"""
Errors a client's request can cause.

Each L{ChatError} carries the text of the C{! ...} line that answers it, so
the protocol writes every error the same way, from one place.
"""

NAME_RULE = "1-32 letters, digits, _ or -, starting with a letter"


class ChatError(Exception):
    """A request the server refuses; C{str(error)} is the reply after C{"! "}."""

    reply = "request refused"

    def __init__(self, reply: str | None = None) -> None:
        super().__init__(reply if reply is not None else self.reply)


class InvalidEncoding(ChatError):
    """The line is not valid UTF-8."""

    reply = "invalid UTF-8; line discarded"


class TelnetMangled(InvalidEncoding):
    """
    The line is not valid UTF-8, and telnet commands were taken out of it:
    the client's telnet turned bytes of non-ASCII characters into commands.
    """

    reply = (
        "invalid UTF-8: your telnet client changed non-ASCII characters; "
        "use nc or chatroute-client for non-ASCII text; line discarded"
    )


class ControlCharacters(ChatError):
    """The line contains control characters (anything in C0, DEL or C1 but tab)."""

    reply = "control characters are not allowed; line discarded"


class LineTooLong(ChatError):
    """The line is longer than the server's limit and was discarded."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"line too long (over {limit} bytes); discarded")


class MalformedLine(ChatError):
    """The line is not any form the protocol knows; the reply says what was expected."""


class UnknownCommand(ChatError):
    """A C{/command} the server does not know."""

    def __init__(self, command: str) -> None:
        super().__init__(f"unknown command: /{command} (try /help)")


class EmptyMessage(ChatError):
    """A message with no text."""

    reply = "empty message"


class NotRegistered(ChatError):
    """The request needs a nickname and the connection has none yet."""

    reply = "register first with #yourname"


class InvalidNickname(ChatError):
    """The nickname breaks the naming rule."""

    def __init__(self, nick: str) -> None:
        super().__init__(f"invalid nickname: {nick!r} ({NAME_RULE})")


class InvalidRoomName(ChatError):
    """The room name breaks the naming rule."""

    def __init__(self, room: str) -> None:
        super().__init__(f"invalid room name: {room!r} (# then {NAME_RULE})")


class NicknameTaken(ChatError):
    """Another connection holds the nickname."""

    def __init__(self, nick: str) -> None:
        super().__init__(f"nickname taken: {nick}")


class NoSuchUser(ChatError):
    """No one online has the nickname."""

    def __init__(self, nick: str) -> None:
        super().__init__(f"no such user: {nick}")


class NoSuchRoom(ChatError):
    """No room has the name."""

    def __init__(self, room: str) -> None:
        super().__init__(f"no such room: {room}")


class NotInRoom(ChatError):
    """The user is not a member of the room."""

    def __init__(self, room: str) -> None:
        super().__init__(f"you are not in {room}")


class AlreadyInRoom(ChatError):
    """The user is already a member of the room."""

    def __init__(self, room: str) -> None:
        super().__init__(f"you are already in {room}")


class InternalError(ChatError):
    """Something unexpected failed on the server; the connection stays usable."""

    reply = "internal server error; the request was not completed"


class AccountExists(ChatError):
    """The nickname is already a registered account."""

    def __init__(self, nick: str) -> None:
        super().__init__(f"{nick} is already registered")


class NoSuchAccount(ChatError):
    """No account has the nickname."""

    def __init__(self, nick: str) -> None:
        super().__init__(f"no such account: {nick}")


class MailboxFull(ChatError):
    """The offline recipient has as many kept messages as the server allows."""

    def __init__(self, nick: str) -> None:
        super().__init__(f"{nick} is offline and has too many waiting messages; not stored")


class NameRegistered(ChatError):
    """A guest tried to take a nickname that is a registered account."""

    def __init__(self, nick: str) -> None:
        super().__init__(f"{nick} is a registered account; log in with #{nick} <password>")


class LoginFailed(ChatError):
    """The name or the password is wrong (which one is not said)."""

    reply = "wrong nickname or password"


class WrongPassword(ChatError):
    """The current password given to change it is wrong (the account is known)."""

    reply = "wrong password"


class LoginThrottled(ChatError):
    """Too many failed logins for the account or from the address."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"too many failed logins; try again in {max(1, round(seconds))} s")


class NotLoggedIn(ChatError):
    """The request needs an account and the connection is not logged in to one."""

    reply = "log in first (#name <password>), or /register <password> to create an account"


class AccountRequired(ChatError):
    """The server runs with --require-account and the user is a guest."""

    reply = (
        "this server requires an account: /register <password> to create one, "
        "or log in with #name <password>"
    )


class BadPassword(ChatError):
    """The new password breaks the password rule."""


class Flooding(ChatError):
    """The connection sends lines faster than the flood limit."""

    def __init__(self, rate: float, burst: int, line_start: str) -> None:
        """
        @param line_start: the start of the refused line, as
            L{chatroute.frontends.syntax.quote_line_start} gives it.
        """
        lines = "line" if rate == 1 else "lines"
        super().__init__(
            f"flood limit: at most {rate:g} {lines} a second (bursts of {burst}); "
            f"line discarded: {line_start}"
        )


class PasswordNeedsTLS(ChatError):
    """A password was sent over plain TCP from outside the machine, and the server forbids it."""

    reply = "passwords are accepted only over TLS; connect to the server's TLS port"


class NotReading(ChatError):
    """The recipient stopped reading; the server disconnected it."""

    def __init__(self, nick: str) -> None:
        super().__init__(f"{nick} is not reading messages and was disconnected; not delivered")
