"""Batches of direct messages between nodes: runs, the wire form, and what is refused."""

import json

import pytest

from chatroute.backplane.batch import DirectBatch, decode
from chatroute.core.events import DirectMessage


def batch_of(*messages: tuple[str, DirectMessage]) -> DirectBatch:
    batch = DirectBatch()
    for to, message in messages:
        batch.add(to, message)
    return batch


MIXED = [
    ("bob", DirectMessage("alice", "hi bob")),
    ("bob", DirectMessage("alice", "are you there?")),
    ("carol", DirectMessage("alice", "waves", action=True)),
    ("bob", DirectMessage("dave", "ping", notice=True)),
    ("bob", DirectMessage("alice", "")),
    ("bob", DirectMessage("alice", 'tab\there, ünïcödé ✓, \\ " {')),
]


def test_a_batch_keeps_its_messages_in_order():
    assert list(batch_of(*MIXED).messages()) == MIXED
    assert batch_of(*MIXED).count == len(MIXED)


def test_runs_from_one_sender_to_one_recipient_travel_together():
    runs = decode(batch_of(*MIXED).encode())
    assert runs == [
        ("bob", "alice", False, False, ["hi bob", "are you there?"]),
        ("carol", "alice", True, False, ["waves"]),
        ("bob", "dave", False, True, ["ping"]),
        ("bob", "alice", False, False, ["", 'tab\there, ünïcödé ✓, \\ " {']),
    ]


def test_the_texts_are_copied_after_a_json_header():
    encoded = batch_of(*MIXED[:3]).encode()
    header, body = encoded.split("\n", 1)
    assert json.loads(header) == [["bob", "alice", 0, 0, 2], ["carol", "alice", 1, 0, 1]]
    assert body == "hi bob\nare you there?\nwaves"


def test_a_text_with_a_newline_goes_in_the_header_and_reads_the_same():
    messages = [("bob", DirectMessage("alice", "one\ntwo")), ("bob", DirectMessage("alice", "x"))]
    encoded = batch_of(*messages).encode()
    assert "\n" not in encoded
    assert decode(encoded) == [("bob", "alice", False, False, ["one\ntwo", "x"])]


@pytest.mark.parametrize(
    "payload",
    [
        "",
        "not json\ntext",
        '{"to": "bob"}\ntext',
        '[["bob","alice",0,0,2]]\nonly one',
        '[["bob","alice",0,0,1]]\none\ntwo',
        '[["bob","alice",0,0]]\none',
        '[[1,"alice",0,0,1]]\none',
        '[["bob","alice",0,0,[1]]]',
        '[["bob","alice",0,0,"one"]]',
    ],
)
def test_anything_else_is_refused(payload):
    with pytest.raises(ValueError):
        decode(payload)
