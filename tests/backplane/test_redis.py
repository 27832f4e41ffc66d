"""
The backplane's side of the events Redis publishes (L{RedisBackplane}):
how a node applies them to its copy of the network and tells its own users,
reads the state afresh when in doubt, and asserts its users again.

Redis is faked here: L{FakeRedis} answers the script's operations with
canned replies, and the tests publish the events the script would. The
script itself, against a real Redis, is what
C{tests/integration/test_backplane.py} proves.
"""

import json
from typing import Any

import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.logger import capturedLogs

from chatroute.backplane.batch import decode
from chatroute.backplane.connection import RedisAddress
from chatroute.backplane.redis import FORWARD_BATCH, PREFIX, RedisBackplane
from chatroute.core.directory import MODERATED, SECRET, TOPIC_LOCK, Presence
from chatroute.core.errors import (
    AlreadyVoiced,
    BackplaneUnavailable,
    ModeUnchanged,
    NicknameTaken,
)
from chatroute.core.events import (
    BanChanged,
    DirectMessage,
    Joined,
    Kicked,
    Left,
    OperatorChanged,
    RoomMessage,
    RoomModeChanged,
    RoomModes,
    StoredForLater,
    TopicChanged,
    UserInfo,
    UserList,
    VoiceChanged,
)
from chatroute.core.router import Router
from chatroute.core.session import Outbox
from chatroute.storage.memory import MemoryStorage

from ..conftest import RecordingParticipant, settled

OTHER = "othernode000"
EVENTS = PREFIX + "events"


class FakeLink:
    """Stands in for a L{RedisLink}: always up, its requests answered by a L{FakeRedis}."""

    def __init__(self, redis: "FakeRedis") -> None:
        self.ready = True
        self.on_ready: Any = lambda: None
        self.on_down: Any = lambda: None
        self.on_message: Any = lambda channel, message: None
        self.subscribed: Deferred[None] | None = None
        self._redis = redis

    def eval(self, script: str, keys: list[str], arguments: list[Any]) -> Deferred[Any]:
        self._redis.order.append(arguments[1])
        return succeed(json.dumps(self._redis.answer(arguments[1], arguments[2:])))

    def execute(self, *arguments: Any) -> Deferred[Any]:
        self._redis.commands.append(arguments)
        self._redis.order.append(arguments[0])
        return succeed(self._redis.receivers)

    def subscribe(self, *channels: str) -> Deferred[Any]:
        if self.subscribed is not None:
            return self.subscribed
        return succeed(None)


class FakeRedis:
    """
    The network's Redis as one node sees it: the snapshot it would read,
    the replies it would give, and the events it would publish.

    @ivar calls: every operation asked for, with its arguments.
    @ivar commands: every plain command sent (C{PUBLISH}), with its arguments.
    @ivar order: the operations and commands, in the order sent.
    @ivar receivers: how many nodes receive each C{PUBLISH}.
    @ivar refusals: operations to refuse, with the reply to give.
    """

    def __init__(self) -> None:
        self.seq = 0
        self.users: list[dict[str, Any]] = []
        self.rooms: list[dict[str, Any]] = []
        self.calls: list[tuple[str, ...]] = []
        self.commands: list[tuple[Any, ...]] = []
        self.order: list[str] = []
        self.receivers = 1
        self.refusals: dict[str, dict[str, Any]] = {}
        self.restored: list[Any] = []

    def answer(self, op: str, arguments: list[Any]) -> dict[str, Any]:
        self.calls.append((op, *arguments))
        if op == "beat":
            return {"alive": True}
        if op == "restore":
            self.restored = json.loads(arguments[1])
            for entry in self.restored:
                self._restore(entry["key"], entry["user"], entry["rooms"])
            return {"lost": []}
        if op == "snapshot":
            return {
                "seq": self.seq,
                "users": [json.dumps(user) for user in self.users],
                "rooms": [json.dumps(room) for room in self.rooms],
            }
        if op in self.refusals:
            return self.refusals[op]
        # The number the change's event will have (the test publishes it).
        return {"seq": self.seq + 1}

    def _restore(self, key: str, user: dict[str, Any], rooms: dict[str, Any]) -> None:
        """What the script's restore does with one user, nobody else holding its name."""
        self.users = [held for held in self.users if held["nick"].lower() != key]
        self.users.append(dict(user, rooms=dict.fromkeys(rooms, True)))
        for room_key, wanted in rooms.items():
            room = next((room for room in self.rooms if room["name"].lower() == room_key), None)
            if room is None:
                room = dict(wanted, members={})
                self.rooms.append(room)
            room["members"][key] = user["nick"]

    def last(self, op: str) -> tuple[str, ...]:
        """The arguments of the last C{op} asked for."""
        return next(call[1:] for call in reversed(self.calls) if call[0] == op)

    def alone_in_a_room(self, nick: str, room: str) -> None:
        """
        The state a snapshot reads: C{nick}, a guest on the node and session
        of the last claim, alone in C{room}, its operator.
        """
        node, sid = self.last("claim")[:2]
        key, room_key = nick.lower(), room.lower()
        self.users = [
            {"nick": nick, "node": node, "sid": sid, "account": False,
             "user": "", "real_name": "", "away": None, "rooms": {room_key: True}},
        ]  # fmt: skip
        self.rooms = [
            {"name": room, "topic": None, "topic_by": None, "topic_at": None,
             "created_at": 1_700_000_000.0, "members": {key: nick}, "ops": {key: True},
             "voiced": {}, "bans": {}, "modes": {TOPIC_LOCK: True}},
        ]  # fmt: skip


class Node:
    """One node's router and backplane, in step with a faked Redis."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.redis = FakeRedis()
        self.commands, self.events = FakeLink(self.redis), FakeLink(self.redis)
        self.backplane = RedisBackplane(
            self.clock, RedisAddress("127.0.0.1"), links=(self.commands, self.events)
        )
        self.storage = MemoryStorage()
        self.router = Router(self.storage, self.clock, backplane=self.backplane)

    def start(self) -> None:
        """The links come up, one and then the other: the node gets in step."""
        self.events.ready = False
        self.commands.on_ready()
        self.events.ready = True
        self.events.on_ready()

    def publish(self, op: str, seq: int | None = None, **fields: Any) -> None:
        """Redis publishes an event (the next in order, by default)."""
        if seq is None:
            self.redis.seq += 1
            seq = self.redis.seq
        self.events.on_message(EVENTS, json.dumps({"op": op, "seq": seq, **fields}))

    def published(self) -> list[tuple[str, list[Any]]]:
        """The direct messages published to other nodes: each channel and its runs."""
        return [(channel, decode(payload)) for _, channel, payload in self.redis.commands]

    def inbox(self, payload: str) -> None:
        """Another node publishes a batch of direct messages to this one."""
        self.events.on_message(f"{PREFIX}node:{self.backplane.node}", payload)

    def local(self, nick: str) -> tuple[Presence, RecordingParticipant]:
        """A user of this node, with its nickname claimed across the network."""
        participant = RecordingParticipant()
        presence = self.router.connect(participant)
        registered = self.router.register(presence, nick)
        node, sid, key = self.redis.last("claim")[:3]
        self.publish(
            "claim", node=node, sid=sid, key=key, nick=nick, old=None, account=False, user="",
            real_name="",
        )  # fmt: skip
        settled(registered)
        participant.take()
        return presence, participant

    def remote(self, nick: str, n: int = 1, account: bool = False) -> None:
        """A user of another node registers."""
        self.publish(
            "claim", node=OTHER, sid=f"{OTHER}.{n}", key=nick.lower(), nick=nick, old=None,
            account=account, user=f"{nick}-user", real_name=f"{nick.title()} Remote",
        )  # fmt: skip

    def room_with(self, room: str, presence: Presence, *remote: str) -> None:
        """C{presence} (of this node) makes the room; the C{remote} users join it."""
        joined = self.router.join(presence, room)
        self.publish(
            "join", key=presence.nick.lower(), room=room, creator=True,
            created_at=1_700_000_000.0,
        )  # fmt: skip
        settled(joined)
        for nick in remote:
            self.publish("join", key=nick.lower(), room=room, creator=False)


@pytest.fixture
def node() -> Node:
    running = Node()
    running.start()
    assert running.backplane.synced
    return running


def test_a_user_of_another_node_is_online_here_with_their_client_names(node):
    node.remote("Bob")
    assert node.router.who().nicks == ("Bob",)
    assert node.router.whois("bob") == UserInfo("Bob", "Bob-user", "Bob Remote")


def test_a_direct_message_to_a_user_of_another_node_goes_to_its_inbox(node):
    alice, _ = node.local("alice")
    node.remote("bob")
    node.router.send_direct(alice, "bob", "hi")
    assert node.redis.commands == []  # sent at the end of the reactor turn
    node.clock.advance(0)
    (command,) = node.redis.commands
    assert command[:2] == ("PUBLISH", f"{PREFIX}node:{OTHER}")
    assert node.published() == [(f"{PREFIX}node:{OTHER}", [("bob", "alice", False, False, ["hi"])])]


def test_the_direct_messages_of_one_turn_to_one_node_go_in_one_publish(node):
    alice, _ = node.local("alice")
    node.remote("bob")
    node.remote("carol", n=2)
    for text in ("one", "two"):
        node.router.send_direct(alice, "bob", text)
    node.router.send_direct(alice, "carol", "three", action=True)
    node.clock.advance(0)
    assert node.published() == [
        (
            f"{PREFIX}node:{OTHER}",
            [
                ("bob", "alice", False, False, ["one", "two"]),
                ("carol", "alice", True, False, ["three"]),
            ],
        )
    ]


def test_a_full_batch_is_sent_at_once(node):
    alice, _ = node.local("alice")
    node.remote("bob")
    for n in range(FORWARD_BATCH + 1):
        node.router.send_direct(alice, "bob", str(n))
    assert len(node.redis.commands) == 1
    node.clock.advance(0)
    assert [len(runs[0][4]) for _, runs in node.published()] == [FORWARD_BATCH, 1]


def test_waiting_direct_messages_go_to_redis_before_any_later_request(node):
    alice, _ = node.local("alice")
    node.remote("bob")
    node.redis.order.clear()
    node.router.send_direct(alice, "bob", "first")
    node.router.join(alice, "#lobby")
    assert node.redis.order == ["PUBLISH", "join"]


def test_direct_messages_no_node_received_are_kept_for_the_account(node):
    alice, participant = node.local("alice")
    node.remote("bob")
    settled(node.storage.create_account("bob", "hash"))
    node.redis.receivers = 0  # bob's node is gone
    for text in ("are you there", "hello?"):
        node.router.send_direct(alice, "bob", text)
    node.clock.advance(0)
    kept = settled(node.storage.pending_messages("bob"))
    assert [(message.sender, message.text) for message in kept] == [
        ("alice", "are you there"),
        ("alice", "hello?"),
    ]
    assert participant.take() == [StoredForLater("bob"), StoredForLater("bob")]


def test_a_direct_message_in_the_inbox_reaches_the_local_user(node):
    _, alice = node.local("alice")
    node.inbox('[["alice","bob",1,0,1]]\nhi')
    assert alice.take() == [DirectMessage("bob", "hi", action=True)]


def test_a_batch_in_the_inbox_reaches_each_local_user_in_one_write(node):
    outbox = node.backplane.outbox = Outbox()
    _, alice = node.local("alice")
    _, carol = node.local("carol")
    written: list[tuple[str, bool]] = []
    for nick, participant in (("alice", alice), ("carol", carol)):
        participant.deliver = (  # type: ignore[method-assign]
            lambda event, nick=nick: written.append((nick, outbox.collecting))
        )
    node.inbox('[["alice","bob",0,0,2],["nobody","bob",0,0,1],["carol","bob",0,1,1]]\na\nb\nc\nd')
    assert written == [("alice", True), ("alice", True), ("carol", True)]
    assert not outbox.collecting


def test_an_unreadable_batch_in_the_inbox_is_dropped_and_logged(node):
    _, alice = node.local("alice")
    with capturedLogs() as events:
        node.inbox('[["alice","bob",0,0,2]]\nonly one')
    assert alice.take() == []
    assert any("unreadable batch" in event["log_format"] for event in events)


def test_a_remote_join_and_message_reach_the_local_members(node):
    alice, participant = node.local("alice")
    node.remote("bob")
    node.room_with("#lobby", alice)
    participant.take()
    node.publish("join", key="bob", room="#lobby", creator=False)
    node.publish("say", room="#lobby", nick="bob", text="hello", action=False, notice=False)
    assert participant.take() == [Joined("#lobby", "bob"), RoomMessage("#lobby", "bob", "hello")]
    assert node.router.who("#lobby") == UserList("#lobby", ("alice", "bob"), ("alice",))


def test_a_room_made_elsewhere_keeps_its_creation_time(node):
    node.remote("bob")
    node.publish("join", key="bob", room="#far", creator=True, created_at=1_600_000_000.5)
    assert node.router.room_modes("#far") == RoomModes("#far", (TOPIC_LOCK,), 1_600_000_000.5)


def test_a_remote_voice_reaches_the_local_members(node):
    alice, participant = node.local("alice")
    node.remote("bob")
    node.room_with("#lobby", alice, "bob")
    participant.take()
    node.publish("operator", key="alice", room="#lobby", target="bob", on=True)
    node.publish("voice", key="bob", room="#lobby", target="alice", on=True)
    assert participant.take() == [
        OperatorChanged("#lobby", "bob", "alice", True),
        VoiceChanged("#lobby", "alice", "bob", True),
    ]
    assert node.router.who("#lobby").voiced == ("alice",)


@pytest.mark.parametrize("mode", [MODERATED, SECRET, TOPIC_LOCK])
def test_a_remote_mode_change_reaches_the_local_members(node, mode):
    alice, participant = node.local("alice")
    node.remote("bob")
    node.room_with("#lobby", alice, "bob")
    participant.take()
    on = mode not in node.router.room_modes("#lobby").modes
    node.publish("mode", key="bob", room="#lobby", mode=mode, on=on)
    assert participant.take() == [RoomModeChanged("#lobby", "bob", mode, on)]
    assert (mode in node.router.room_modes("#lobby").modes) is on


def test_remote_topic_kick_and_ban_reach_the_local_members(node):
    alice, participant = node.local("alice")
    node.remote("bob")
    node.remote("carol", n=2)
    node.room_with("#lobby", alice, "bob", "carol")
    participant.take()
    node.publish("topic", key="bob", room="#lobby", topic="plans", at=1_800_000_001.0)
    node.publish("kick", key="bob", room="#lobby", target="carol", reason="noise")
    node.publish("ban", key="bob", room="#lobby", target="dave", shown="Dave", on=True)
    assert participant.take() == [
        TopicChanged("#lobby", "bob", "plans"),
        Kicked("#lobby", "carol", "bob", "noise"),
        BanChanged("#lobby", "Dave", "bob", True),
    ]
    assert node.router.topic("#lobby").set_at == 1_800_000_001.0
    assert node.router.who("#lobby").nicks == ("alice", "bob")
    assert node.router.bans("#lobby").nicks == ("Dave",)


def test_a_remote_user_who_registers_an_account_is_an_account_here(node):
    node.remote("bob")
    assert node.router.whois("bob").account is None
    node.publish("account", key="bob")
    assert node.router.whois("bob").account == "bob"


def test_a_node_that_is_gone_takes_its_users_out_of_their_rooms(node):
    alice, participant = node.local("alice")
    node.remote("bob")
    node.room_with("#lobby", alice, "bob")
    participant.take()
    node.publish("gone", key="bob", sid=f"{OTHER}.1", reason=None, replaced=False)
    assert participant.take() == [Left("#lobby", "bob", disconnected=True)]
    assert node.router.who().nicks == ("alice",)


def test_a_local_change_is_done_once_its_event_comes_back(node):
    alice, participant = node.local("alice")
    node.remote("bob")
    node.room_with("#lobby", alice, "bob")
    participant.take()
    voiced = node.router.set_voice(alice, "#lobby", "bob", True)
    assert node.redis.last("voice") == ("alice", "#lobby", "bob", 1)
    assert not voiced.called
    assert participant.take() == []
    node.publish("voice", key="alice", room="#lobby", target="bob", on=True)
    assert settled(voiced) is None
    assert participant.take() == [VoiceChanged("#lobby", "bob", "alice", True)]


def test_a_local_mode_change_goes_to_redis(node):
    alice, _ = node.local("alice")
    node.room_with("#lobby", alice)
    moded = node.router.set_room_mode(alice, "#lobby", MODERATED, True)
    assert node.redis.last("mode") == ("alice", "#lobby", MODERATED, 1)
    node.publish("mode", key="alice", room="#lobby", mode=MODERATED, on=True)
    settled(moded)
    assert node.router.room_modes("#lobby").modes == (MODERATED, TOPIC_LOCK)


def test_a_local_join_gives_redis_the_time_of_a_new_room(node):
    alice, _ = node.local("alice")
    node.router.join(alice, "#lobby")
    assert node.redis.last("join") == ("alice", "#lobby", "#lobby", repr(node.clock.seconds()))


@pytest.mark.parametrize(
    ("op", "reply", "change", "error"),
    [
        (
            "voice",
            {"error": "already_voiced", "room": "#lobby", "nick": "bob"},
            lambda router, alice: router.set_voice(alice, "#lobby", "bob", True),
            AlreadyVoiced("#lobby", "bob"),
        ),
        (
            "mode",
            {"error": "mode_unchanged", "room": "#lobby", "mode": MODERATED, "on": True},
            lambda router, alice: router.set_room_mode(alice, "#lobby", MODERATED, True),
            ModeUnchanged("#lobby", MODERATED, True),
        ),
    ],
)
def test_a_change_redis_refuses_fails_with_its_error(node, op, reply, change, error):
    # Another node's change got there first; this node had not heard of it yet.
    alice, _ = node.local("alice")
    node.remote("bob")
    node.room_with("#lobby", alice, "bob")
    node.redis.refusals[op] = reply
    with pytest.raises(type(error)) as raised:
        settled(change(node.router, alice))
    assert raised.value == error


def test_a_local_claim_redis_refuses_is_taken(node):
    node.redis.refusals["claim"] = {"error": "taken", "nick": "Alice"}
    presence = node.router.connect(RecordingParticipant())
    with pytest.raises(NicknameTaken):
        settled(node.router.register(presence, "alice"))


def test_registering_an_account_tells_the_network(node):
    alice, _ = node.local("alice")
    sid = node.redis.last("claim")[1]
    marked = node.router.mark_account(alice, "alice")
    assert node.redis.last("account") == ("alice", sid)
    node.publish("account", key="alice")
    settled(marked)
    assert alice.account


def test_an_account_registered_while_cut_off_is_marked_here_and_asserted_later(node):
    alice, _ = node.local("alice")
    node.commands.on_down()
    settled(node.router.mark_account(alice, "alice"))
    assert alice.account
    node.start()
    (entry,) = node.redis.restored
    assert entry["user"]["account"] is True


def test_events_already_applied_are_ignored(node):
    node.remote("bob")
    node.publish("gone", seq=node.redis.seq, key="bob", sid=f"{OTHER}.1", reason=None)
    assert node.router.who().nicks == ("bob",)


def test_a_missed_event_makes_the_node_read_the_state_afresh(node):
    node.redis.users = [
        {"nick": "bob", "node": OTHER, "sid": f"{OTHER}.1", "account": True, "user": "b",
         "real_name": "B", "away": "lunch", "rooms": {}},
    ]  # fmt: skip
    node.redis.seq = 5
    node.publish("away", seq=5, key="bob", message="lunch")  # 1 to 4 never came
    assert node.redis.calls[-1] == ("snapshot",)
    assert node.backplane.synced
    assert node.router.whois("bob") == UserInfo("bob", "b", "B", "lunch", "bob")


def test_an_event_that_does_not_fit_the_copy_makes_the_node_read_the_state_afresh(node):
    snapshots = sum(1 for call in node.redis.calls if call[0] == "snapshot")
    node.publish("away", key="nobody", message=None)
    assert sum(1 for call in node.redis.calls if call[0] == "snapshot") == snapshots + 1


def test_the_state_read_afresh_has_each_room_whole(node):
    node.redis.users = [
        {"nick": nick, "node": OTHER, "sid": f"{OTHER}.{n}", "account": False, "user": "",
         "real_name": "", "away": None, "rooms": {"#lobby": True}}
        for n, nick in enumerate(["bob", "Carol"])
    ]  # fmt: skip
    node.redis.rooms = [
        {"name": "#lobby", "topic": "plans", "topic_by": "bob", "topic_at": 1_700_000_001.0,
         "created_at": 1_700_000_000.0, "members": {"bob": "bob", "carol": "Carol"},
         "ops": {"bob": True}, "voiced": {"carol": True}, "bans": {"dave": "Dave"},
         "modes": {MODERATED: True, SECRET: True}},
    ]  # fmt: skip
    node.publish("resync")
    router = node.router
    assert router.who("#lobby") == UserList(
        "#lobby", ("bob", "Carol"), ("bob",), voiced=("Carol",), secret=True
    )
    assert router.room_modes("#lobby") == RoomModes("#lobby", (MODERATED, SECRET), 1_700_000_000.0)
    assert router.topic("#lobby").set_by == "bob"
    assert router.bans("#lobby").nicks == ("Dave",)


def test_users_asserted_again_elsewhere_are_taken_in_order_without_reading_afresh(node):
    # Redis restarted empty: this node got in step first; the other node's
    # restore then publishes what it wrote, and this node takes it as an event.
    alice, participant = node.local("alice")
    node.room_with("#lobby", alice)
    participant.take()
    snapshots = node.redis.calls.count(("snapshot",))
    bob = {"nick": "Bob", "node": OTHER, "sid": f"{OTHER}.1", "account": True,
           "user": "b", "real_name": "B", "away": None, "rooms": {"#lobby": True}}  # fmt: skip
    lobby = {"name": "#lobby", "topic": "plans", "topic_by": "Bob", "topic_at": 1_700_000_001.0,
             "created_at": 1_700_000_000.0, "members": {"alice": "alice", "bob": "Bob"},
             "ops": {"alice": True}, "voiced": {"bob": True}, "bans": {},
             "modes": {MODERATED: True}}  # fmt: skip
    node.publish("resync", users={"bob": bob}, rooms={"#lobby": lobby})
    assert node.backplane.synced
    assert node.redis.calls.count(("snapshot",)) == snapshots
    assert node.router.whois("bob") == UserInfo("Bob", "b", "B", None, "Bob")
    assert node.router.who("#lobby") == UserList(
        "#lobby", ("alice", "Bob"), ("alice",), voiced=("Bob",)
    )
    assert node.router.room_modes("#lobby").modes == (MODERATED,)
    assert participant.take() == []  # as when read afresh: nobody is told
    # The next change is neither refused nor lost.
    said = node.router.send_room(alice, "#lobby", "after")
    node.publish("say", room="#lobby", nick="alice", text="after", action=False, notice=False)
    assert settled(said) is None
    assert participant.take() == [RoomMessage("#lobby", "alice", "after")]


def test_a_change_asked_for_while_reading_afresh_waits_and_is_done(node):
    alice, participant = node.local("alice")
    node.room_with("#lobby", alice)
    participant.take()
    node.events.subscribed = Deferred()
    node.redis.seq = 7
    node.publish("away", seq=8, key="alice", message=None)  # 4 to 7 never came
    assert not node.backplane.synced
    said = node.router.send_room(alice, "#lobby", "meanwhile")
    assert not said.called
    assert "say" not in {call[0] for call in node.redis.calls[-3:]}
    node.redis.alone_in_a_room("alice", "#lobby")
    node.events.subscribed.callback(None)
    assert node.backplane.synced
    assert node.redis.last("say") == ("#lobby", "alice", "meanwhile", 0, 0)
    node.publish("say", room="#lobby", nick="alice", text="meanwhile", action=False, notice=False)
    assert settled(said) is None
    assert participant.take() == [RoomMessage("#lobby", "alice", "meanwhile")]


def test_a_change_waiting_for_the_node_to_get_in_step_is_refused_if_redis_is_lost():
    node = Node()
    node.start()
    alice, _ = node.local("alice")
    node.events.subscribed = Deferred()
    node.publish("resync")
    joined = node.router.join(alice, "#lobby")
    assert not joined.called
    node.events.ready = False
    node.events.on_down()
    with pytest.raises(BackplaneUnavailable):
        settled(joined)


def test_events_published_while_getting_in_step_are_applied_after_the_snapshot():
    node = Node()
    node.events.subscribed = Deferred()
    node.start()
    node.redis.users = [
        {"nick": "bob", "node": OTHER, "sid": f"{OTHER}.1", "account": False, "user": "",
         "real_name": "", "away": None, "rooms": {}},
    ]  # fmt: skip
    node.redis.seq = 1
    # Published before the snapshot was read (already in it), and after.
    node.publish("claim", seq=1, node=OTHER, sid=f"{OTHER}.1", key="bob", nick="bob",
                 old=None, account=False, user="", real_name="")  # fmt: skip
    node.publish("away", seq=2, key="bob", message="lunch")
    assert not node.backplane.synced
    node.events.subscribed.callback(None)
    assert node.backplane.synced
    assert node.router.whois("bob").away == "lunch"


def test_a_room_message_already_in_the_snapshot_still_reaches_the_members_here(node):
    alice, participant = node.local("alice")
    node.room_with("#lobby", alice)
    participant.take()
    said = node.router.send_room(alice, "#lobby", "in flight")
    node.events.subscribed = Deferred()
    node.redis.seq = 9
    node.publish("away", seq=9, key="alice", message=None)  # events missed: read afresh
    # Published while the node reads the state afresh: in the snapshot, yet
    # a message changes nothing there and must still be delivered.
    node.publish("say", seq=10, room="#lobby", nick="alice", text="in flight", action=False,
                 notice=False)  # fmt: skip
    node.redis.seq = 10
    node.redis.alone_in_a_room("alice", "#lobby")
    node.events.subscribed.callback(None)
    assert node.backplane.synced
    assert settled(said) is None
    assert participant.take() == [RoomMessage("#lobby", "alice", "in flight")]


def test_a_node_asserts_its_users_rooms_whole_when_getting_in_step_again(node):
    alice, _ = node.local("alice")
    node.remote("bob")
    node.room_with("#lobby", alice, "bob")
    room = node.backplane.directory.room("#lobby")
    room.voiced.add("alice")
    room.modes.add(SECRET)
    node.commands.on_down()
    node.start()
    (entry,) = node.redis.restored
    assert entry["key"] == "alice"
    assert entry["rooms"]["#lobby"] == {
        "name": "#lobby",
        "topic": None,
        "topic_by": None,
        "topic_at": None,
        "created_at": 1_700_000_000.0,
        "members": {},
        "ops": {"alice": True},
        "voiced": {"alice": True},
        "bans": {},
        "modes": {SECRET: True, TOPIC_LOCK: True},
    }


def test_changes_are_refused_while_cut_off(node):
    alice, _ = node.local("alice")
    node.commands.on_down()
    with pytest.raises(BackplaneUnavailable):
        settled(node.router.join(alice, "#lobby"))


def test_a_direct_message_to_a_user_leaving_meanwhile_is_kept_for_their_account(node):
    alice, participant = node.local("alice")
    bob, _ = node.local("bob")
    settled(node.storage.create_account("bob", "hash"))
    node.router.disconnect(bob)
    # bob's name is held until the network has let him go.
    assert node.redis.last("gone")[0] == "bob"
    assert node.router.who().nicks == ("alice", "bob")
    assert node.router.send_direct(alice, "bob", "still there?") is None
    assert participant.take() == [StoredForLater("bob")]
    (kept,) = settled(node.storage.pending_messages("bob"))
    assert (kept.sender, kept.text) == ("alice", "still there?")


def test_a_direct_message_from_another_node_to_a_user_leaving_meanwhile_is_kept(node):
    bob, _ = node.local("bob")
    node.remote("carol")
    settled(node.storage.create_account("bob", "hash"))
    node.router.disconnect(bob)
    node.inbox('[["bob","carol",0,0,1]]\nhi')
    (kept,) = settled(node.storage.pending_messages("bob"))
    assert (kept.sender, kept.text) == ("carol", "hi")
