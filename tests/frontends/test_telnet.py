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
