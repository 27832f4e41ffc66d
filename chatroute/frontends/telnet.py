"""
Telnet commands in a client's byte stream: taken out, and answered.

A C{telnet} client mixes commands (each starting with the byte IAC, 255) into
what the user types: C{IAC IP} for Ctrl-C, option negotiation, and C{IAC DO
TIMING-MARK}, after which it shows nothing more until the server answers.
chatroute takes every command out of the stream, refuses every option, and
answers the timing mark, so a telnet session never freezes. IAC never occurs
in UTF-8, so this cannot touch a real chat line; C{IAC IAC} (a literal 255)
is kept, and makes its line invalid UTF-8.
"""

IAC = 255
SE = 240
SB = 250
WILL, WONT, DO, DONT = 251, 252, 253, 254
TIMING_MARK = 6

_ANSWERS = {WILL: DONT, DO: WONT}


class TelnetFilter:
    """Separates one connection's telnet commands from its data, across chunks."""

    __slots__ = ("_held", "_in_subnegotiation")

    def __init__(self) -> None:
        self._held = b""
        self._in_subnegotiation = False

    def feed(self, data: bytes) -> tuple[bytes, bytes]:
        """
        Take the commands out of the next chunk.

        @return: the data without commands, and the bytes to answer with.
        A command cut off at the end of the chunk is kept for the next one.
        """
        data = self._held + data
        self._held = b""
        kept = bytearray()
        answer = bytearray()
        start = 0
        while True:
            at = data.find(b"\xff", start)
            if at < 0:
                if not self._in_subnegotiation:
                    kept += data[start:]
                return bytes(kept), bytes(answer)
            if not self._in_subnegotiation:
                kept += data[start:at]
            command = data[at + 1 : at + 2]
            if not command:
                self._held = data[at:]
                return bytes(kept), bytes(answer)
            code = command[0]
            start = at + 2
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
                    return bytes(kept), bytes(answer)
                start = at + 3
                answer += self._answer(code, option[0])

    @staticmethod
    def _answer(code: int, option: int) -> bytes:
        """Refuse every option; confirm a timing mark (RFC 860), which ends a client's wait."""
        if code == DO and option == TIMING_MARK:
            return bytes((IAC, WILL, TIMING_MARK))
        refusal = _ANSWERS.get(code)
        return bytes((IAC, refusal, option)) if refusal is not None else b""
