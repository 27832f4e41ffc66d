"""
Several real C{twistd chatroute --redis ... --db postgresql://...} nodes on
one private Redis and one private PostgreSQL are one chat: presence, direct
messages, rooms and everything a room has, nickname claims, a node killed
with C{kill -9}, and Redis and PostgreSQL each restarted under load.

Each test's nodes share a new database of the private PostgreSQL server
(C{tests/postgres_server.py}), as nodes on several machines do. One test
runs nodes on one SQLite file instead, as nodes on one machine may.
"""

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ..postgres_server import PostgresServer
from ..redis_server import RedisServer, private_redis
from .support import IRC_STARTED, READ_TIMEOUT, ChatConnection, IRCConnection, ServerProcess

pytestmark = pytest.mark.integration

IN_STEP = re.compile(r"backplane: node \w+ in step at event")
STORED = "* {nick} is offline; message stored for delivery at login"
UNAVAILABLE = "! the other servers cannot be reached now; not done, try again"
# The lease (10 s) and the heartbeat (2.5 s), with room for a loaded machine.
GONE_WITHIN = 20.0
# A change applied on one node is applied on the others a Redis round trip later.
ELSEWHERE_WITHIN = 5.0
_POLL = 0.05
_KEPT = re.compile(r"\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\] <(\w+)> (.*)")
PASSWORD = "secret123"
MODERATED = "(moderated: only operators and voiced members send)"


class Network:
    """Nodes sharing one Redis and one database, and connections to them."""

    def __init__(self, directory: Path, redis: RedisServer, database: str) -> None:
        """@param database: the nodes' C{--db}: a PostgreSQL URL, or one SQLite file."""
        self.directory = directory
        self.redis = redis
        self.database = database
        self.nodes: list[ServerProcess] = []
        self.connections: list[ChatConnection | IRCConnection] = []
        self._started = 0

    def start_node(self, *options: str) -> ServerProcess:
        """Start one more node and wait until it is in step with the network."""
        self._started += 1
        node = ServerProcess(
            self.directory,
            "--redis",
            self.redis.url,
            "--db",
            self.database,
            "--flood-rate",
            "0",
            "--listen-irc",
            "tcp:0:interface=127.0.0.1",
            *options,
            log_name=f"node{self._started}.log",
        )
        self.nodes.append(node)
        node.wait_for_log(IN_STEP)
        return node

    def stop_node(self, node: ServerProcess) -> None:
        """Stop a node as an operator would (SIGTERM); fail if it did not stop cleanly."""
        self.nodes.remove(node)
        problem = _stopped(node)
        assert problem is None, problem

    def connect(self, node: ServerProcess, name: str) -> ChatConnection:
        connection = ChatConnection(node.port, name)
        self.connections.append(connection)
        return connection

    def user(self, node: ServerProcess, nick: str) -> ChatConnection:
        """A guest C{nick} on C{node}."""
        connection = self.connect(node, nick)
        connection.register(nick)
        return connection

    def irc_user(self, node: ServerProcess, nick: str) -> IRCConnection:
        """A guest C{nick} on C{node}'s IRC listener, past the welcome."""
        port = int(node.wait_for_log(IRC_STARTED)[0].group(1))
        connection = IRCConnection(port, f"{nick} (IRC)")
        self.connections.append(connection)
        connection.send(f"NICK {nick}")
        connection.send(f"USER {nick} 0 * :{nick}")
        connection.expect_command("422")  # the end of the welcome: no MOTD
        return connection

    def close_connections(self) -> None:
        for connection in self.connections:
            connection.close()
        self.connections = []

    def close(self) -> list[str]:
        self.close_connections()
        problems = [problem for problem in map(_stopped, self.nodes) if problem is not None]
        self.nodes = []
        return problems


def _stopped(node: ServerProcess) -> str | None:
    """Stop the node; what was wrong with its exit or its log, or None."""
    status = node.stop()
    log = node.log()
    if status not in (0, -15, -9):
        return f"{node.log_path.name} exited with {status}:\n{log}"
    if status != -9 and "Traceback" in log:
        return f"{node.log_path.name} logged an error:\n{log}"
    return None


@contextmanager
def _running(directory: Path, database: str) -> Iterator[Network]:
    with private_redis(directory / "redis") as redis:
        nodes = directory / "nodes"
        nodes.mkdir()
        running = Network(nodes, redis, database)
        try:
            yield running
        finally:
            problems = running.close()
            assert not problems, "\n".join(problems)


@pytest.fixture
def network(tmp_path: Path, postgres_url: str) -> Iterator[Network]:
    """A network of its own for the test: a new Redis and a new PostgreSQL database."""
    with _running(tmp_path, postgres_url) as running:
        yield running


@pytest.fixture(scope="module")
def _shared_pair(
    tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer
) -> Iterator[Network]:
    database = postgres.create_database()
    try:
        with _running(tmp_path_factory.mktemp("pair"), postgres.url(database)) as running:
            running.start_node()
            running.start_node()
            yield running
    finally:
        postgres.drop_database(database)


@pytest.fixture
def pair(_shared_pair: Network) -> Iterator[Network]:
    """
    Two running nodes, shared by the short tests of this module (each uses
    nicknames and rooms of its own); the test's connections are closed after it.
    """
    yield _shared_pair
    _shared_pair.close_connections()


def eventually_who(connection: ChatConnection, online: list[str], within: float) -> list[str]:
    """
    Ask C{/who} until it is exactly C{online}, for at most C{within} seconds.

    @return: the other lines received meanwhile.
    """
    expected = f"* online ({len(online)}): {', '.join(sorted(online, key=str.lower))}"
    deadline = time.monotonic() + within
    others = []
    while True:
        connection.send("/who")
        line = connection.read_line()
        while not line.startswith("* online ("):
            others.append(line)
            line = connection.read_line()
        if line == expected:
            return others
        if time.monotonic() > deadline:
            pytest.fail(f"/who still {line!r}, not {expected!r}\n{connection.describe()}")
        time.sleep(_POLL)


def eventually(connection: ChatConnection, command: str, expected: str, within: float) -> None:
    """Send C{command} until its one-line answer is C{expected}, for at most C{within} seconds."""
    deadline = time.monotonic() + within
    while True:
        connection.send(command)
        line = connection.read_line()
        if line == expected:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"{command} still {line!r}, not {expected!r}\n{connection.describe()}")
        time.sleep(_POLL)


def everyone_sees(members: tuple[ChatConnection, ...], line: str) -> None:
    for member in members:
        member.expect(line)


def register_account(connection: ChatConnection, nick: str, password: str = PASSWORD) -> None:
    connection.register(nick)
    connection.send(f"/register {password}")
    connection.expect(f"* {nick} is now a registered account; log in with #{nick} <password>")


def make_offline_account(node: ServerProcess, nick: str) -> None:
    """Register C{nick} as an account on C{node}, and leave: it is offline everywhere."""
    connection = ChatConnection(node.port, nick)
    register_account(connection, nick)
    connection.close()


def log_in(
    node: ServerProcess, network: Network, nick: str, password: str = PASSWORD
) -> tuple[ChatConnection, list[tuple[str, str]]]:
    """Log in on C{node}; the connection and the (sender, text) of the messages kept."""
    connection = network.connect(node, nick)
    connection.send(f"#{nick} {password}")
    match = connection.expect_match(
        rf"\* logged in as {nick}(?:; (\d+) waiting messages? follows?)?"
    )
    kept = []
    for _ in range(int(match.group(1) or 0)):
        found = _KEPT.fullmatch(connection.read_line())
        assert found
        kept.append((found.group(1), found.group(2)))
    connection.nick = nick
    return connection, kept


def test_users_on_three_nodes_see_each_other_dm_and_share_rooms(network):
    nodes = [network.start_node() for _ in range(3)]
    ann, ben, cat = (
        network.user(node, nick) for node, nick in zip(nodes, ["ann", "ben", "cat"], strict=True)
    )
    for connection in (ann, ben, cat):
        # Each node hears of the others' users a moment after they register.
        assert eventually_who(connection, ["ann", "ben", "cat"], within=5.0) == []

    ann.send("@cat:hello from node 1")
    cat.expect("<ann> hello from node 1")
    cat.send("@ben:and from node 3")
    ben.expect("<cat> and from node 3")
    ben.send("/whois ann")
    assert "ann" in ben.read_line()

    ann.join("#lobby")
    ben.join("#lobby", ann)
    cat.join("#lobby", ann, ben)
    ann.send("/topic #lobby plans")
    for member in (ann, ben, cat):
        member.expect("* ann set the topic of #lobby: plans")
    # Every member sees the room's messages in one order, whoever sent them from where.
    for n in range(5):
        for sender in (ann, ben, cat):
            sender.send(f"@#lobby:{sender.nick} {n}")
    orders = [[member.read_line() for _ in range(15)] for member in (ann, ben, cat)]
    assert orders[0] == orders[1] == orders[2]
    assert sorted(orders[0]) == sorted(
        f"#lobby <{nick}> {nick} {n}" for n in range(5) for nick in ("ann", "ben", "cat")
    )
    for sender in (ann, ben, cat):
        mine = [line for line in orders[0] if line.startswith(f"#lobby <{sender.nick}>")]
        assert mine == [f"#lobby <{sender.nick}> {sender.nick} {n}" for n in range(5)]

    cat.send("/leave #lobby")
    for member in (ann, ben, cat):
        member.expect("* cat left #lobby")
    ben.send("/who #lobby")
    ben.expect("* #lobby (2): @ann, ben")


def test_a_nickname_claimed_on_two_nodes_at_once_goes_to_exactly_one(network):
    first, second = network.start_node(), network.start_node()
    for attempt in range(10):
        nick = f"dup{attempt}"
        one, two = network.connect(first, "one"), network.connect(second, "two")
        one.send(f"#{nick}")
        two.send(f"#{nick}")
        answers = [one.read_line(), two.read_line()]
        assert sorted(answers) == sorted(
            [f"* registered as {nick}", f"! nickname taken: {nick}"]
        ), answers
        one.close()
        two.close()


def test_killed_node_users_leave_and_their_kept_messages_arrive_once_elsewhere(network):
    nodes = [network.start_node() for _ in range(3)]
    doomed, survivor, sender_node = nodes
    make_offline_account(doomed, "dora")
    make_offline_account(doomed, "olga")
    # Messages the doomed node acknowledged as stored, before it dies.
    pia = network.user(doomed, "pia")
    before = []
    for n in range(5):
        pia.send(f"@olga:before {n}")
        pia.expect(STORED.format(nick="olga"))
        before.append(("pia", f"before {n}"))
    dora, kept = log_in(doomed, network, "dora")
    assert kept == []
    dora.send("/join #ops")
    dora.expect("* dora joined #ops")
    dora.read_line()
    watcher = network.user(survivor, "walt")
    watcher.join("#ops", dora)
    sam = network.user(sender_node, "sam")
    eventually_who(sam, ["dora", "pia", "sam", "walt"], within=5.0)

    doomed.kill()
    # Gone from /who and from the room within the lease.
    started = time.monotonic()
    others = eventually_who(watcher, ["sam", "walt"], GONE_WITHIN)
    assert time.monotonic() - started < 15.0
    assert others == ["* dora left #ops (disconnected)"]

    acknowledged = []
    for n in range(20):
        sam.send(f"@dora:note {n}")
        sam.expect(STORED.format(nick="dora"))
        acknowledged.append(("sam", f"note {n}"))

    again, kept = log_in(survivor, network, "dora")
    assert kept == acknowledged
    again.close()
    _, kept = log_in(survivor, network, "olga")
    assert kept == before
    # Delivered once: the next logins find none.
    _, kept = log_in(sender_node, network, "dora")
    assert kept == []
    _, kept = log_in(sender_node, network, "olga")
    assert kept == []


def test_a_direct_message_to_a_dead_node_is_kept_at_once(network):
    doomed, other = network.start_node(), network.start_node()
    setup = network.connect(doomed, "setup")
    register_account(setup, "dan")
    sam = network.user(other, "sam")
    eventually_who(sam, ["dan", "sam"], within=5.0)
    doomed.kill()
    # dan is still in /who until the lease runs out, but his node is gone: the message is kept.
    sam.send("@dan:are you there")
    sam.expect(STORED.format(nick="dan"))
    _, kept = log_in(other, network, "dan")
    assert kept == [("sam", "are you there")]


def test_one_login_per_account_across_nodes(network):
    first, second = network.start_node(), network.start_node()
    setup = network.connect(first, "setup")
    register_account(setup, "olive")
    old = setup
    new, _ = log_in(second, network, "olive")
    old.expect("* logged in from another connection; closing")
    old.expect_eof()
    new.sync(["olive"])


def test_nodes_on_one_machine_may_share_one_sqlite_file(tmp_path):
    # The one-machine setup docs/deploy.md describes: every node's --db is the same file.
    with _running(tmp_path, str(tmp_path / "chat.db")) as network:
        first, second = network.start_node(), network.start_node()
        make_offline_account(first, "sue")
        sam = network.user(first, "sam")
        sam.send("@sue:kept in the file")
        sam.expect(STORED.format(nick="sue"))
        _, kept = log_in(second, network, "sue")
        assert kept == [("sam", "kept in the file")]
        _, kept = log_in(first, network, "sue")
        assert kept == []


def test_redis_restarted_under_load_is_survived(network):
    first, second = network.start_node(), network.start_node()
    ann = network.user(first, "ann")
    ben = network.user(second, "ben")
    ann.join("#load")
    ben.join("#load", ann)
    ann.send("/mode #load +m")
    everyone_sees((ann, ben), "* ann set #load +m " + MODERATED)
    ann.send("/voice #load ben")
    everyone_sees((ann, ben), "* ann gave ben a voice in #load")
    ben.send("/mode #load")
    modes = ben.read_line()
    assert modes.startswith("* modes of #load: +mt; created ")

    network.redis.restart()
    # While the nodes find Redis again, each request is refused (and said so) or done.
    deadline = time.monotonic() + 30.0
    while True:
        ann.send("@#load:ping")
        line = ann.read_line()
        if line == "#load <ann> ping":
            break
        assert line == UNAVAILABLE, line
        assert time.monotonic() < deadline, "the nodes did not get Redis back"
        time.sleep(_POLL)
    # Both nodes asserted their users and rooms again, and read the state afresh.
    for node in (first, second):
        node.wait_for_log(IN_STEP, count=2)
    ann.send("@#load:after")
    ann.expect("#load <ann> after")
    seen = [ben.read_line()]
    while seen[-1] != "#load <ann> after":
        assert seen[-1] == "#load <ann> ping", seen
        seen.append(ben.read_line())
    ben.send("@ann:still here")
    ann.expect("<ben> still here")
    eventually_who(ann, ["ann", "ben"], within=5.0)
    # The room came back whole: its operator, voice, modes and creation time.
    for member in (ann, ben):
        member.send("/who #load")
        member.expect("* #load (2): @ann, +ben")
        member.send("/mode #load")
        member.expect(modes)
    for node in (first, second):
        assert "lost the connection" in node.log()


SENDERS = 4
PER_SENDER = 100
# Acknowledgements to wait for before PostgreSQL goes, so that most messages are still to come.
BEFORE_OUTAGE = 20
# A message waits for PostgreSQL to come back: its start, and a retry.
RECOVERY_TIMEOUT = 60.0


def test_postgresql_restarted_while_nodes_run_loses_and_doubles_nothing(
    network, postgres, restart_postgres
):
    cap = ("--offline-cap", str(SENDERS * PER_SENDER))
    first, second = network.start_node(*cap), network.start_node(*cap)
    make_offline_account(first, "alice")
    ann, ben = network.user(first, "ann"), network.user(second, "ben")
    ann.join("#during")
    ben.join("#during", ann)
    # Senders on both nodes, every message at once: each node takes a
    # sender's next line once the last is stored, so they keep coming all
    # through the outage.
    senders = [network.user((first, second)[s % 2], f"bob{s}") for s in range(SENDERS)]
    for s, sender in enumerate(senders):
        for n in range(PER_SENDER):
            sender.send(f"@alice:{s}.{n}")

    acknowledged: list[str] = []
    refused: list[str] = []
    replies = [0] * SENDERS

    def read_reply(s: int, timeout: float) -> None:
        reply = senders[s].read_line(timeout)
        if reply == STORED.format(nick="alice"):
            acknowledged.append(f"{s}.{replies[s]}")
        else:
            assert reply.startswith("! "), reply
            refused.append(reply)
        replies[s] += 1

    while len(acknowledged) < BEFORE_OUTAGE:
        read_reply(0, READ_TIMEOUT)
    postgres.stop()
    # Chat between people online goes on across nodes, storage or not.
    ben.send("@ann:is the database down?")
    ann.expect("<ben> is the database down?")
    ann.send("@#during:the room goes on")
    everyone_sees((ann, ben), "#during <ann> the room goes on")
    postgres.start()
    for s in range(SENDERS):
        while replies[s] < PER_SENDER:
            read_reply(s, RECOVERY_TIMEOUT)

    alice, kept = log_in(second, network, "alice")
    alice.close()
    _, again = log_in(first, network, "alice")

    assert refused == [], "PostgreSQL was back well within the retry time"
    assert len(acknowledged) == SENDERS * PER_SENDER
    assert sorted(text for _, text in kept) == sorted(acknowledged), "every one, each once"
    assert again == [], "delivered messages are forgotten"
    logs = [node.log() for node in (first, second)]
    assert any("lost PostgreSQL (" in log for log in logs)
    assert any("PostgreSQL is back after " in log for log in logs)


# Everything a room has reaches the members on the other node.


def test_room_modes_reach_the_other_node(pair):
    first, second = pair.nodes
    mona, mike = pair.user(first, "mona"), pair.user(second, "mike")
    outsider = pair.user(second, "milo")
    mona.join("#modes")
    mike.join("#modes", mona)
    members = (mona, mike)

    mona.send("/mode #modes +m")
    everyone_sees(members, "* mona set #modes +m " + MODERATED)
    mike.send("@#modes:may I?")
    mike.expect("! #modes is moderated: only operators and voiced members send")

    mona.send("/mode #modes -t")
    everyone_sees(members, "* mona set #modes -t (every member may set the topic)")
    mike.send("/topic #modes set on node 2")
    everyone_sees(members, "* mike set the topic of #modes: set on node 2")

    mona.send("/mode #modes +s")
    everyone_sees(members, "* mona set #modes +s (secret: unlisted, members hidden from outsiders)")
    outsider.send("/who #modes")
    outsider.expect("! no such room: #modes")
    mike.send("/mode #modes")
    mike.expect_match(r"\* modes of #modes: \+ms; created .*")


def test_a_voice_reaches_the_other_node(pair):
    first, second = pair.nodes
    vera, vic = pair.user(first, "vera"), pair.user(second, "vic")
    vera.join("#voice")
    vic.join("#voice", vera)
    members = (vera, vic)
    vera.send("/mode #voice +m")
    everyone_sees(members, "* vera set #voice +m " + MODERATED)

    vera.send("/voice #voice vic")
    everyone_sees(members, "* vera gave vic a voice in #voice")
    vic.send("@#voice:now I may")
    everyone_sees(members, "#voice <vic> now I may")
    vic.send("/who #voice")
    vic.expect("* #voice (2): @vera, +vic")
    # A voiced member renamed on its node keeps the voice everywhere.
    vic.send("#victor")
    vic.expect("* registered as victor")
    vera.expect("* vic is now victor")
    vera.send("/who #voice")
    vera.expect("* #voice (2): @vera, +victor")

    vera.send("/devoice #voice victor")
    everyone_sees(members, "* vera took victor's voice in #voice")
    vic.send("@#voice:and now?")
    vic.expect("! #voice is moderated: only operators and voiced members send")


def test_a_rooms_creation_time_is_the_same_on_every_node(pair):
    first, _ = pair.nodes
    cora = pair.user(first, "cora")
    cora.join("#born")
    cora.send("/mode #born")
    created = cora.read_line()
    # A node that starts later reads the room from Redis's state.
    late = pair.start_node()
    try:
        newcomer = pair.user(late, "cleo")
        newcomer.send("/mode #born")
        newcomer.expect(created)
    finally:
        pair.stop_node(late)


def test_a_topic_reaches_the_other_node_with_who_set_it_and_when(pair):
    first, second = pair.nodes
    tess, ted = pair.user(first, "tess"), pair.user(second, "ted")
    tess.join("#topic")
    ted.join("#topic", tess)
    before = int(time.time())
    tess.send("/topic #topic plans for node 2")
    everyone_sees((tess, ted), "* tess set the topic of #topic: plans for node 2")
    after = int(time.time()) + 1
    reader = pair.irc_user(second, "tina")
    reader.send("TOPIC #topic")
    assert reader.expect_command("332").endswith(" #topic :plans for node 2")
    set_by, set_at = reader.expect_command("333").split(" ")[-2:]
    assert set_by.startswith("tess!")
    assert before <= int(set_at) <= after


def test_operators_and_kicks_reach_the_other_node(pair):
    first, second = pair.nodes
    oscar, olly, otto = (
        pair.user(first, "oscar"),
        pair.user(second, "olly"),
        pair.user(first, "otto"),
    )
    oscar.join("#ops")
    olly.join("#ops", oscar)
    otto.join("#ops", oscar, olly)
    members = (oscar, olly, otto)

    oscar.send("/op #ops olly")
    everyone_sees(members, "* oscar made olly an operator of #ops")
    olly.send("/kick #ops otto too loud")
    everyone_sees(members, "* otto was kicked from #ops by olly: too loud")
    olly.send("/deop #ops oscar")
    everyone_sees((oscar, olly), "* olly took operator status in #ops from oscar")
    for member in (oscar, olly, otto):
        member.send("/who #ops")
        member.expect("* #ops (2): @olly, oscar")


def test_bans_reach_the_other_node(pair):
    first, second = pair.nodes
    bea, bo = pair.user(first, "bea"), pair.user(second, "bo")
    bea.join("#bans")
    bo.join("#bans", bea)
    bea.send("/ban #bans bo")
    everyone_sees((bea, bo), "* bea banned bo from #bans")
    everyone_sees((bea, bo), "* bo was kicked from #bans by bea")
    bo.send("/join #bans")
    bo.expect("! you are banned from #bans")
    bo.send("/bans #bans")
    bo.expect("* bans of #bans (1): bo")

    bea.send("/unban #bans bo")
    bea.expect("* bea unbanned bo from #bans")
    eventually(bo, "/bans #bans", "* bans of #bans (0)", ELSEWHERE_WITHIN)
    bo.join("#bans", bea)


def test_an_account_registered_on_one_node_is_an_account_on_the_other(pair):
    first, second = pair.nodes
    asa = pair.connect(first, "asa")
    asa.register("asa")
    reader = pair.irc_user(second, "ada")

    def whois() -> list[str]:
        reader.send("WHOIS asa")
        lines = [reader.expect_command("311")]
        while " 318 " not in lines[-1]:
            lines.append(reader.read_line())
        return lines

    assert not any(" 330 " in line for line in whois()), "a guest, so far"
    asa.send(f"/register {PASSWORD}")
    asa.expect("* asa is now a registered account; log in with #asa <password>")
    deadline = time.monotonic() + ELSEWHERE_WITHIN
    while not any(line.endswith(" 330 ada asa asa :is logged in as") for line in whois()):
        assert time.monotonic() < deadline, reader.describe()
        time.sleep(_POLL)
