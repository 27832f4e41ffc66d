"""
IRC against the real server: a raw-socket IRC client and a line protocol
user on the same C{twistd chatroute}, talking both ways, directly and in a room.
"""

import pytest

from .support import IRC_STARTED, IRCConnection, ServerProcess

pytestmark = [
    pytest.mark.integration,
    pytest.mark.server_options("--listen-irc", "tcp:0:interface=127.0.0.1"),
]


@pytest.fixture
def irc_port(server: ServerProcess) -> int:
    return int(server.wait_for_log(IRC_STARTED)[0].group(1))


def test_irc_and_line_users_talk_both_ways(server, irc_port, connect):
    alice = IRCConnection(irc_port, "alice (IRC)")
    try:
        alice.send("CAP LS 302")
        alice.expect(
            f":chatroute NOTICE * :*** Connected from 127.0.0.1:{alice.sock.getsockname()[1]}"
        )
        alice.expect(":chatroute CAP * LS :multi-prefix sasl=PLAIN server-time userhost-in-names")
        alice.send("NICK alice")
        alice.send("USER alice 0 * :Alice")
        alice.send("CAP END")
        alice.expect(
            ":chatroute 001 alice :Welcome to the chatroute IRC network, alice!alice@chatroute"
        )
        alice.expect_command("422")

        bob = connect("bob")
        bob.register("bob")

        alice.send("PRIVMSG bob :hello from IRC")
        bob.expect("<alice> hello from IRC")
        bob.send("@alice:hello from the line protocol")
        alice.expect(":bob!bob@chatroute PRIVMSG alice :hello from the line protocol")

        alice.send("JOIN #lobby")
        alice.expect(":alice!alice@chatroute JOIN #lobby")
        alice.expect(":chatroute 353 alice = #lobby :@alice")
        alice.expect(":chatroute 366 alice #lobby :End of /NAMES list")
        bob.nick = "bob"
        bob.send("/join #lobby")
        bob.expect("* bob joined #lobby")
        bob.expect("* #lobby (2): @alice, bob")
        alice.expect(":bob!bob@chatroute JOIN #lobby")

        alice.send("PRIVMSG #lobby :hi room")
        bob.expect("#lobby <alice> hi room")
        bob.send("@#lobby:hi alice")
        bob.expect("#lobby <bob> hi alice")
        alice.expect(":bob!bob@chatroute PRIVMSG #lobby :hi alice")

        alice.send("QUIT :done")
        alice.expect("ERROR :Closing link: alice[chatroute] (Quit: done)")
        alice.expect_eof()
        bob.expect("* alice left #lobby (disconnected: done)")
    finally:
        alice.sock.close()


def test_a_client_still_writing_after_the_error_reads_it_and_the_end(irc_port):
    # A client writes on before it reads the ERROR (an IRC client sends NICK
    # and USER right after a PASS the server refuses): the server reads and
    # drops it until the client closes, rather than answering it with a reset,
    # which would fail the client's next write and could discard the ERROR.
    alice = IRCConnection(irc_port, "alice (IRC)")
    try:
        alice.send("QUIT :done")
        alice.expect_command("ERROR")
        alice.expect_eof()
        for _ in range(3):
            alice.send("NICK alice")
        alice.expect_eof()
    finally:
        alice.sock.close()
