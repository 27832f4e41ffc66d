"""
Direct messages between nodes through the backplane, with Redis faked: what
one reactor turn sends another node, what a gone node's messages become, and
how a batch reaches the clients here.
"""

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.testing import MemoryReactorClock

from chatroute.backplane.batch import decode
from chatroute.backplane.connection import RedisAddress
from chatroute.backplane.redis import FORWARD_BATCH, RedisBackplane
from chatroute.core.events import DirectMessage, StoredForLater
from chatroute.core.router import Router
from chatroute.core.session import Outbox
from chatroute.storage.memory import MemoryStorage
from tests.conftest import RecordingParticipant, settled


class FakeLink:
    """Stands in for the commands link: records what is sent, in order."""

    def __init__(self, receivers: int = 1) -> None:
        self.sent: list[tuple[Any, ...]] = []
        self.receivers = receivers
        self.ready = True

    def execute(self, *arguments: Any) -> Deferred[Any]:
        self.sent.append(arguments)
        return succeed(self.receivers)

    def eval(self, script: str, keys: list[str], arguments: list[Any]) -> Deferred[Any]:
        self.sent.append(("EVALSHA", *arguments[1:2]))
        return Deferred()


class Node:
    """A backplane and its router, on a test clock, with a fake link to Redis."""

    def __init__(self, receivers: int = 1) -> None:
        self.clock = MemoryReactorClock()
        self.backplane = RedisBackplane(self.clock, RedisAddress("127.0.0.1", 1))
        self.link = FakeLink(receivers)
        self.backplane._commands = self.link  # type: ignore[assignment]
        self.storage = MemoryStorage()
        self.router = Router(self.storage, self.clock, backplane=self.backplane)

    def local(self, nick: str) -> RecordingParticipant:
        """A user of this node."""
        participant = RecordingParticipant()
        presence = self.router.connect(participant)
        self.backplane._sid(presence)
        self.router.apply_claim(presence, nick, False)
        participant.take()
        return participant

    def remote(self, nick: str, node: str = "elsewhere") -> None:
        """A user of another node, as this one knows them."""
        presence = self.backplane._remote_presence(node, f"{node}.{nick}")
        self.router.apply_claim(presence, nick, False)

    def published(self) -> list[tuple[str, list[Any]]]:
        """The PUBLISHes sent so far: channel and runs."""
        return [(channel, decode(payload)) for _, channel, payload in self.link.sent]


def test_the_direct_messages_of_one_turn_to_one_node_go_in_one_publish():
    node = Node()
    node.local("alice")
    node.remote("bob")
    node.remote("carol")
    alice = node.router._directory.holder("alice")
    for text in ("one", "two"):
        node.router.send_direct(alice, "bob", text)
    node.router.send_direct(alice, "carol", "three")
    assert node.link.sent == []
    node.clock.advance(0)
    assert node.published() == [
        (
            "chatroute:node:elsewhere",
            [
                ("bob", "alice", False, False, ["one", "two"]),
                ("carol", "alice", False, False, ["three"]),
            ],
        )
    ]


def test_a_full_batch_is_sent_at_once():
    node = Node()
    node.local("alice")
    node.remote("bob")
    alice = node.router._directory.holder("alice")
    for n in range(FORWARD_BATCH + 1):
        node.router.send_direct(alice, "bob", str(n))
    assert len(node.link.sent) == 1
    node.clock.advance(0)
    assert [len(runs[0][4]) for _, runs in node.published()] == [FORWARD_BATCH, 1]


def test_waiting_direct_messages_go_before_any_other_request():
    node = Node()
    node.local("alice")
    node.remote("bob")
    node.backplane.synced = True
    alice = node.router._directory.holder("alice")
    node.router.send_direct(alice, "bob", "first")
    node.backplane.join(alice, "#room")
    assert [sent[0] for sent in node.link.sent] == ["PUBLISH", "EVALSHA"]


def test_messages_nobody_received_are_kept_for_the_recipient():
    node = Node(receivers=0)
    alice = node.local("alice")
    node.remote("bob")
    settled(node.storage.create_account("bob", "hash"))
    sender = node.router._directory.holder("alice")
    for text in ("are you there", "hello?"):
        node.router.send_direct(sender, "bob", text)
    node.clock.advance(0)
    kept = settled(node.storage.pending_messages("bob"))
    assert [(message.sender, message.text) for message in kept] == [
        ("alice", "are you there"),
        ("alice", "hello?"),
    ]
    assert alice.take() == [StoredForLater("bob"), StoredForLater("bob")]


def test_a_batch_from_another_node_reaches_each_client_in_one_write():
    node = Node()
    outbox = node.backplane.outbox = Outbox()

    class Collecting(RecordingParticipant):
        def deliver(self, event: Any) -> None:
            assert outbox.collecting, "delivered while the outbox is not collecting"
            super().deliver(event)

    bob = Collecting()
    presence = node.router.connect(bob)
    node.backplane._sid(presence)
    node.router.apply_claim(presence, "bob", False)
    bob.take()
    payload = '[["bob","alice",0,0,2],["nobody","alice",0,0,1]]\nhi\nthere\nlost'
    node.backplane._message(node.backplane._inbox, payload)
    assert bob.take() == [DirectMessage("alice", "hi"), DirectMessage("alice", "there")]
    assert not outbox.collecting
