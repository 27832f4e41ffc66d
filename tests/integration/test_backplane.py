"""
Several real C{twistd chatroute --redis ...} nodes on one private Redis are
one chat: presence, direct messages, rooms, nickname claims, a node killed
with C{kill -9}, and Redis restarted under load.

The nodes share one SQLite file, as nodes on one machine may (SQLite locks
the file between processes; every write is C{BEGIN IMMEDIATE}), so that a
message kept for an offline account on one node is delivered at a login on
another. Across machines that store is PostgreSQL (C{--db postgresql://}).
"""

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..redis_server import RedisServer, private_redis
from .support import ChatConnection, ServerProcess

pytestmark = pytest.mark.integration

IN_STEP = re.compile(r"backplane: node \w+ in step at event")
STORED = "* {nick} is offline; message stored for delivery at login"
# The lease (10 s) and the heartbeat (2.5 s), with room for a loaded machine.
GONE_WITHIN = 20.0
_POLL = 0.05
_KEPT = re.compile(r"\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\] <(\w+)> (.*)")


class Network:
    """Nodes sharing one Redis and one database, and connections to them."""

    def __init__(self, directory: Path, redis: RedisServer) -> None:
        self.directory = directory
        self.redis = redis
        self.nodes: list[ServerProcess] = []
        self.connections: list[ChatConnection] = []

    def start_node(self) -> ServerProcess:
        """Start one more node and wait until it is in step with the network."""
        node = ServerProcess(
            self.directory,
            "--redis",
            self.redis.url,
            "--db",
            str(self.directory / "chat.db"),
            "--flood-rate",
            "0",
            log_name=f"node{len(self.nodes) + 1}.log",
        )
        self.nodes.append(node)
        node.wait_for_log(IN_STEP)
        return node

    def connect(self, node: ServerProcess, name: str) -> ChatConnection:
        connection = ChatConnection(node.port, name)
        self.connections.append(connection)
        return connection

    def user(self, node: ServerProcess, nick: str) -> ChatConnection:
        """A guest C{nick} on C{node}."""
        connection = self.connect(node, nick)
        connection.register(nick)
        return connection

    def close(self) -> list[str]:
        for connection in self.connections:
            connection.close()
        problems = []
        for node in self.nodes:
            status = node.stop()
            log = node.log()
            if status not in (0, -15, -9):
                problems.append(f"{node.log_path.name} exited with {status}:\n{log}")
            elif status != -9 and "Traceback" in log:
                problems.append(f"{node.log_path.name} logged an error:\n{log}")
        return problems


@pytest.fixture
def network(tmp_path: Path) -> Iterator[Network]:
    with private_redis(tmp_path / "redis") as redis:
        directory = tmp_path / "nodes"
        directory.mkdir()
        running = Network(directory, redis)
        try:
            yield running
        finally:
            problems = running.close()
            assert not problems, "\n".join(problems)


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


def register_account(connection: ChatConnection, nick: str, password: str) -> None:
    connection.register(nick)
    connection.send(f"/register {password}")
    connection.expect(f"* {nick} is now a registered account; log in with #{nick} <password>")


def log_in(
    node: ServerProcess, network: Network, nick: str, password: str
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
    setup = network.connect(doomed, "setup")
    register_account(setup, "dora", "secret123")
    setup.close()
    dora, kept = log_in(doomed, network, "dora", "secret123")
    assert kept == []
    dora.send("/join #ops")
    dora.expect("* dora joined #ops")
    dora.read_line()
    watcher = network.user(survivor, "walt")
    watcher.join("#ops", dora)
    sam = network.user(sender_node, "sam")
    eventually_who(sam, ["dora", "sam", "walt"], within=5.0)

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

    again, kept = log_in(survivor, network, "dora", "secret123")
    assert kept == acknowledged
    again.close()
    # Delivered once: the next login finds none.
    _, kept = log_in(sender_node, network, "dora", "secret123")
    assert kept == []


def test_a_direct_message_to_a_dead_node_is_kept_at_once(network):
    doomed, other = network.start_node(), network.start_node()
    setup = network.connect(doomed, "setup")
    register_account(setup, "dan", "secret123")
    sam = network.user(other, "sam")
    eventually_who(sam, ["dan", "sam"], within=5.0)
    doomed.kill()
    # dan is still in /who until the lease runs out, but his node is gone: the message is kept.
    sam.send("@dan:are you there")
    sam.expect(STORED.format(nick="dan"))
    _, kept = log_in(other, network, "dan", "secret123")
    assert kept == [("sam", "are you there")]


def test_one_login_per_account_across_nodes(network):
    first, second = network.start_node(), network.start_node()
    setup = network.connect(first, "setup")
    register_account(setup, "olive", "secret123")
    old = setup
    new, _ = log_in(second, network, "olive", "secret123")
    old.expect("* logged in from another connection; closing")
    old.expect_eof()
    new.sync(["olive"])


def test_redis_restarted_under_load_is_survived(network):
    first, second = network.start_node(), network.start_node()
    ann = network.user(first, "ann")
    ben = network.user(second, "ben")
    ann.join("#load")
    ben.join("#load", ann)

    network.redis.restart()
    # While the nodes find Redis again, each request is refused (and said so) or done.
    deadline = time.monotonic() + 30.0
    while True:
        ann.send("@#load:ping")
        line = ann.read_line()
        if line == "#load <ann> ping":
            break
        assert line == "! the other servers cannot be reached now; not done, try again", line
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
    ben.send("/who #load")
    ben.expect("* #load (2): @ann, ben")
    for node in (first, second):
        assert "lost the connection" in node.log()
