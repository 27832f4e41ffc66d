"""
Wire-protocol adapters of the load generator: how to register, send a direct
or room message, and read the server's control lines, for chatroute's line
protocol and for IRC.

Message payloads are protocol-neutral: a single word starting with C{M}
(see L{bench.loadgen}), which every server delivers as the last word of the
line it writes to the receiver.
"""

from dataclasses import dataclass


class ServerError(Exception):
    """The server answered a bench command with an error."""


@dataclass(frozen=True, slots=True)
class Reply:
    """What a control line means to the client that got it."""

    registered: bool = False
    joined: bool = False
    answer: bytes = b""  # to write back (IRC PONG)
    error: str = ""


NOTHING = Reply()


class Adapter:
    """chatroute's line protocol (and the tutorial server's, which it grew from)."""

    echoes_room_messages = True

    def register(self, nick: str, sender: bool) -> bytes:
        """The bytes that claim C{nick}; C{sender} clients may need more rights (IRC)."""
        return f"#{nick}\r\n".encode()

    def dm_prefix(self, to: str) -> bytes:
        """What goes before a direct message's text to C{to}."""
        return f"@{to}:".encode()

    def room_prefix(self, room: str) -> bytes:
        """What goes before a message's text to the room C{#room}."""
        return f"@#{room}:".encode()

    def join(self, room: str) -> bytes:
        """The bytes that join C{#room}."""
        return f"/join #{room}\r\n".encode()

    def control(self, line: bytes) -> Reply:
        """Interpret a line that carried no payload."""
        if line.startswith(b"* registered as "):
            return Reply(registered=True)
        if line.startswith(b"* #") and b" (" in line:
            return Reply(joined=True)  # the member list the joiner gets
        if line.startswith(b"! "):
            return Reply(error=line.decode(errors="replace").strip())
        return NOTHING


class IRCAdapter(Adapter):
    """IRC (RFC 2812): NICK/USER, PRIVMSG, JOIN; a member does not get its own room message."""

    echoes_room_messages = False

    def register(self, nick: str, sender: bool) -> bytes:
        """NICK and USER; registration completes with numeric 001."""
        return f"NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\n".encode()

    def dm_prefix(self, to: str) -> bytes:
        """C{PRIVMSG to :}."""
        return f"PRIVMSG {to} :".encode()

    def room_prefix(self, room: str) -> bytes:
        """C{PRIVMSG #room :}."""
        return f"PRIVMSG #{room} :".encode()

    def join(self, room: str) -> bytes:
        """C{JOIN #room}; done with numeric 366 (end of the names list)."""
        return f"JOIN #{room}\r\n".encode()

    def control(self, line: bytes) -> Reply:
        """Welcome, end of names, PING, numeric errors (4xx, 5xx) and ERROR."""
        if line.startswith(b"PING"):
            return Reply(answer=b"PONG" + line[4:].rstrip(b"\r") + b"\r\n")
        if line.startswith(b"ERROR"):
            return Reply(error=line.decode(errors="replace").strip())
        words = line.split(b" ", 3)
        numeric = words[1] if len(words) > 2 and line.startswith(b":") else b""
        if numeric == b"001":
            return self.welcomed(words[2])
        if numeric == b"366":
            return Reply(joined=True)
        # 422 (no MOTD) is information, not a refusal.
        if numeric[:1] in (b"4", b"5") and numeric.isdigit() and numeric != b"422":
            return Reply(error=line.decode(errors="replace").strip())
        return NOTHING

    def welcomed(self, nick: bytes) -> Reply:
        """Numeric 001 arrived for C{nick}."""
        return Reply(registered=True)


class IRCOperAdapter(IRCAdapter):
    """
    IRC for ngircd: senders become operators and set user mode C{+F}.

    ngircd handles at most 3 commands per read from a client and closes a
    client whose read buffer (2 KiB) overflows; mode C{+F} ("relaxed flood
    protection", operators only) lifts the limit to 10. The bench config
    sets up the operator C{bench}/C{bench}; see L{bench.servers}.
    """

    def __init__(self) -> None:
        self._senders: set[bytes] = set()

    def register(self, nick: str, sender: bool) -> bytes:
        """As for IRC; a sender will OPER once welcomed."""
        if sender:
            self._senders.add(nick.encode())
        return super().register(nick, sender)

    def welcomed(self, nick: bytes) -> Reply:
        """Senders OPER and set +F, and are registered once they are operators (381)."""
        if nick in self._senders:
            return Reply(answer=b"OPER bench bench\r\nMODE " + nick + b" +F\r\n")
        return Reply(registered=True)

    def control(self, line: bytes) -> Reply:
        """As for IRC, and numeric 381 (you are an operator) completes a sender's registration."""
        words = line.split(b" ", 2)
        if len(words) > 2 and words[1] == b"381":
            return Reply(registered=True)
        return super().control(line)


def adapter_for(protocol: str) -> Adapter:
    """The adapter for a peer's protocol name (see L{bench.servers.Peer})."""
    adapters: dict[str, type[Adapter]] = {
        "chatroute": Adapter,
        "irc": IRCAdapter,
        "irc-oper": IRCOperAdapter,
    }
    return adapters[protocol]()
