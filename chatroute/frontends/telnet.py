"""
Telnet commands in a client's byte stream: taken out, and answered.

A C{telnet} client mixes commands (each starting with the byte IAC, 255) into
what the user types: C{IAC IP} for Ctrl-C, option negotiation, and C{IAC DO
TIMING-MARK}, after which it shows nothing more until the server answers.
chatroute takes every command out of the stream, refuses every option, and
answers the timing mark, so a telnet session never freezes. IAC never occurs
in UTF-8, so this cannot touch a real chat line; C{IAC IAC} (a literal 255)
is kept, and makes its line invalid UTF-8. Only the bytes 240 to 255 after
IAC are commands (RFC 854); IAC before any other byte, such as a stray 255
from C{nc}, is no command: it stays in the data as a 255, and the byte after
it is data too, so it never takes a line ending with it.

The filter also notes which lines had commands taken out: some telnet
clients, even with C{-8}, turn a byte of a non-ASCII character into a command
(Debian 12's sends C{IAC BRK, IAC DO TIMING-MARK} for the byte 0x9c of C{本}),
and a line so broken deserves a reply that says who broke it. It says so
only once the client has negotiated an option (C{IAC DO TIMING-MARK} is
one), which telnet does with each such command and C{nc} never does by
itself: bytes from C{nc} that happen to read as a command are not blamed on
a telnet client the user does not have.
"""

from collections.abc import Sequence

IAC = 255
SE = 240
SB = 250
WILL, WONT, DO, DONT = 251, 252, 253, 254
TIMING_MARK = 6

_ANSWERS = {WILL: DONT, DO: WONT}
_NEGOTIATION = frozenset((SB, WILL, WONT, DO, DONT))
"""The commands only a telnet client sends: option negotiation."""


class TelnetFilter:
    """
    Separates one connection's telnet commands from its data, across chunks.

    @ivar lines_with_commands: after L{feed}, the lines of its data that
        commands were taken out of after the line had begun (so not the
        negotiation before a line), as indexes into its data's lines ended
        by LF (0 is the line that was under way when the chunk came); none
        until the client has negotiated an option (so is a telnet client).
    """

    __slots__ = (
        "_command_in_line",
        "_held",
        "_in_subnegotiation",
        "_line_begun",
        "_negotiated",
        "lines_with_commands",
    )

    def __init__(self, line_begun: bool = False) -> None:
        """
        @param line_begun: part of a line came before the filter was needed,
            so a command at the start of the first chunk is inside a line.
        """
        self._held = b""
        self._in_subnegotiation = False
        self._command_in_line = False
        self._line_begun = line_begun
        self._negotiated = False
        self.lines_with_commands: list[int] = []

    def feed(self, data: bytes) -> tuple[bytes, bytes]:
        """
        Take the commands out of the next chunk; note the lines they were in.

        @return: the data without commands, and the bytes to answer with.
        A command cut off at the end of the chunk is kept for the next one.
        """
        kept, answer, taken_at = self._take_out(data)
        lines = {0} if self._command_in_line else set()
        for offset in taken_at:
            line_start = kept.rfind(b"\n", 0, offset) + 1
            if offset > line_start or (line_start == 0 and self._line_begun):
                lines.add(kept.count(b"\n", 0, offset))
        ends = kept.count(b"\n")
        self._command_in_line = ends in lines
        last_start = kept.rfind(b"\n") + 1
        self._line_begun = len(kept) > last_start or (last_start == 0 and self._line_begun)
        self.lines_with_commands = (
            sorted(line for line in lines if line < ends) if self._negotiated else []
        )
        return kept, answer

    def _take_out(self, data: bytes) -> tuple[bytes, bytes, list[int]]:
        """The data without commands, the answer, and where in the data commands were."""
        data = self._held + data
        self._held = b""
        kept = bytearray()
        answer = bytearray()
        taken_at: list[int] = []
        start = 0
        while True:
            at = data.find(b"\xff", start)
            if at < 0:
                if not self._in_subnegotiation:
                    kept += data[start:]
                return bytes(kept), bytes(answer), taken_at
            if not self._in_subnegotiation:
                kept += data[start:at]
            command = data[at + 1 : at + 2]
            if not command:
                self._held = data[at:]
                return bytes(kept), bytes(answer), taken_at
            code = command[0]
            if code < SE:
                # Not a command: the 255 is data, and so is the byte after it.
                if not self._in_subnegotiation:
                    kept.append(IAC)
                start = at + 1
                continue
            start = at + 2
            if code != IAC:
                taken_at.append(len(kept))
            if code in _NEGOTIATION:
                self._negotiated = True
            if code == IAC:
                if not self._in_subnegotiation:
                    kept.append(IAC)
            elif code == SB:
                self._in_subnegotiation = True
            elif code == SE:
                self._in_subnegotiation = False
            elif code in (WILL, WONT, DO, DONT):
                option = data[at + 2 : at + 3]
                if not option:
                    self._held = data[at:]
                    return bytes(kept), bytes(answer), taken_at
                start = at + 3
                answer += self._answer(code, option[0])

    @staticmethod
    def _answer(code: int, option: int) -> bytes:
        """Refuse every option; confirm a timing mark (RFC 860), which ends a client's wait."""
        if code == DO and option == TIMING_MARK:
            return bytes((IAC, WILL, TIMING_MARK))
        refusal = _ANSWERS.get(code)
        return bytes((IAC, refusal, option)) if refusal is not None else b""


class TelnetMangledLine(bytes):
    """
    A line telnet commands were taken out of and that is not UTF-8: the
    client's telnet turned bytes of its non-ASCII characters into commands.
    """

    __slots__ = ()


def mark_mangled(lines: list[bytes], with_commands: Sequence[int], limit: int) -> None:
    """
    Mark the C{lines} (complete, without line endings) at the indexes
    C{with_commands} that are not UTF-8 as L{TelnetMangledLine}, so that
    their error says telnet broke them; lines over C{limit} are left alone.
    """
    for index in with_commands:
        line = lines[index]
        if len(line) <= limit and not _is_utf8(line):
            lines[index] = TelnetMangledLine(line)


def _is_utf8(line: bytes) -> bool:
    try:
        line.decode()
    except UnicodeDecodeError:
        return False
    return True
