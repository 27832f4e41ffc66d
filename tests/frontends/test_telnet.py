"""Telnet commands are taken out of the stream and answered."""

import pytest

from chatroute.frontends.telnet import TelnetFilter


@pytest.mark.parametrize(
    ("chunks", "data", "answer"),
    [
        ([b"#alice\r\n"], b"#alice\r\n", b""),
        ([b"ab\xff\xf4\xff\xfd\x06cd\n"], b"abcd\n", b"\xff\xfb\x06"),  # Ctrl-C: IP, DO TM
        ([b"\xff\xfd\x01x"], b"x", b"\xff\xfc\x01"),  # DO ECHO -> WONT ECHO
        ([b"\xff\xfb\x18x"], b"x", b"\xff\xfe\x18"),  # WILL TTYPE -> DONT TTYPE
        ([b"\xff\xfc\x01\xff\xfe\x01x"], b"x", b""),  # WONT, DONT: nothing to say
        ([b"a\xff\xfa\x18\x00xterm\xff\xf0b"], b"ab", b""),  # subnegotiation dropped
        ([b"a\xff\xffb"], b"a\xffb", b""),  # a literal 255 stays
        ([b"a\xff", b"\xfd", b"\x06b"], b"ab", b"\xff\xfb\x06"),  # cut across chunks
        ([b"a\xff\xfa\x18xt", b"erm\xff", b"\xf0b\n"], b"ab\n", b""),
        # Only 240-255 after IAC are commands: a stray 255 is data, and so is what follows.
        ([b"a\xff\nb\n"], b"a\xff\nb\n", b""),
        ([b"a\xff", b"\nb\n"], b"a\xff\nb\n", b""),
        ([b"a\xff\xefb"], b"a\xff\xefb", b""),
        ([b"a\xff\xff\xff\n"], b"a\xff\xff\n", b""),
        ([b"\xff\x00\xff\xfd\x01"], b"\xff\x00", b"\xff\xfc\x01"),
        ([b"a\xff\xfa\x18\xff\x01x\xff\xf0b"], b"ab", b""),  # inside a subnegotiation too
    ],
)
def test_filter(chunks, data, answer):
    telnet = TelnetFilter()
    kept, answered = b"", b""
    for chunk in chunks:
        more, reply = telnet.feed(chunk)
        kept += more
        answered += reply
    assert (kept, answered) == (data, answer)


@pytest.mark.parametrize(
    ("chunks", "lines"),
    [
        ([b"#alice\r\n@bob:hi\r\n"], [[]]),
        # What Debian 12's telnet -8 sends for @bob:本 (E6 9C AC): the 0x9c
        # becomes IAC BRK, IAC DO TIMING-MARK; the rest follows the answer.
        ([b"@bob:\xe6\xff\xf3\xff\xfd\x06", b"\xac\r\n"], [[], [0]]),
        ([b"@bob:\xe6\xff\xf3\xff\xfd\x06\xac\r\n"], [[0]]),
        ([b"#bob\r\n@bob:\xd0\xff\xf4\xff\xfd\x06\r\nok\r\n"], [[1]]),
        ([b"\xff\xfd\x01a\xff\xf4\nb\nc\xff\xf5\nd"], [[0, 2]]),
        ([b"ab\xff\xf4", b"\xff\xfd\x06", b"cd", b"\r\n"], [[], [], [], [0]]),
        ([b"\xff\xfd\x01", b"x\n"], [[], []]),  # negotiation before a line is not in it
        ([b"\xff\xfd\x01x\n\xff\xfb\x03y\n"], [[]]),
        ([b"x", b"\xff\xfd\x01", b"y\n"], [[], [], [0]]),  # but after its first byte it is
        ([b"a\xff\xffb\n"], [[]]),  # a literal 255 is data, not a command
        ([b"a\n\xff\xf4", b"b\n"], [[], []]),
        ([b"a\nb\xff\xf4\xff\xfd\x06", b"c\n"], [[], [0]]),
        # Until the client negotiates an option, it is no telnet client (nc, say).
        ([b"a\xff\xf4\nb\nc\xff\xf5\nd"], [[]]),
        ([b"a\nb\xff\xf4", b"c\n"], [[], []]),
        ([b"a\xff\xf4\n", b"b\xff\xf4\xff\xfd\x06\n"], [[], [0]]),
        ([b"a\xff\n"], [[]]),  # no command at all
    ],
)
def test_lines_commands_were_taken_out_of(chunks, lines):
    """For each chunk: the complete lines in its data that had commands taken out."""
    telnet = TelnetFilter()
    found = []
    for chunk in chunks:
        telnet.feed(chunk)
        found.append(telnet.lines_with_commands)
    assert found == lines
