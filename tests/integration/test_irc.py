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
