"""The router's rules: names, direct messages, rooms, and clean-up on disconnect."""

import pytest
from twisted.internet.defer import Deferred
from twisted.logger import capturedLogs

from chatroute.core import errors
from chatroute.core.directory import MODERATED, SECRET, TOPIC_LOCK
from chatroute.core.events import (
    AwayChanged,
    BanChanged,
    BanList,
    Counts,
    DirectMessage,
    HistoryStart,
    IsAway,
    Joined,
    Kicked,
    Left,
    LoggedIn,
    Membership,
    OperatorChanged,
    Registered,
    Renamed,
    Replayed,
    RoomList,
    RoomMessage,
    RoomModeChanged,
    RoomModes,
    RoomTopic,
    StoredForLater,
    TopicChanged,
    UserInfo,
    UserList,
    VoiceChanged,
)
from chatroute.core.router import RouterSettings
from tests.conftest import Person, settled


def test_register(router):
    alice = Person(router)
    router.register(alice.presence, "Alice")
    assert alice.take() == [Registered("Alice")]
    assert router.who() == UserList(None, ("Alice",))


@pytest.mark.parametrize(
    "nick",
    ["", "1abc", "_abc", "-abc", "a b", "a.b", "é", "a" * 33, "al!ce", "#alice"],
)
def test_register_invalid(router, nick):
    alice = Person(router)
    with pytest.raises(errors.InvalidNickname):
        router.register(alice.presence, nick)
    assert router.who() == UserList(None, ())


@pytest.mark.parametrize("nick", ["a", "A" * 32, "a1_-", "Zed-9"])
def test_register_valid_edges(router, nick):
    alice = Person(router)
    router.register(alice.presence, nick)
    assert alice.take() == [Registered(nick)]


def test_nickname_taken_case_insensitively(router):
    Person(router, "alice")
    bob = Person(router)
    with pytest.raises(errors.NicknameTaken, match="nickname taken: alice"):
        router.register(bob.presence, "ALICE")
    assert bob.presence.nick is None


def test_rename_frees_old_name_and_tells_roommates_once(router):
    alice, bob = Person(router, "alice"), Person(router, "bob")
    for room in ("#a", "#b"):
        router.join(alice.presence, room)
        router.join(bob.presence, room)
    alice.take(), bob.take()
    router.register(alice.presence, "alicia")
    assert alice.take() == [Registered("alicia")]
    assert bob.take() == [Renamed("alice", "alicia")]
    assert router.who("#a") == UserList("#a", ("alicia", "bob"), ("alicia",))
    carol = Person(router)
    router.register(carol.presence, "alice")
    router.send_direct(bob.presence, "alicia", "hi")
    assert alice.take() == [DirectMessage("bob", "hi")]


def test_reregister_same_name_changes_case(router):
    alice = Person(router, "alice")
    router.register(alice.presence, "Alice")
    assert alice.take() == [Registered("Alice")]
    assert router.who() == UserList(None, ("Alice",))


def test_direct_message(router):
    alice, bob = Person(router, "alice"), Person(router, "bob")
    router.send_direct(alice.presence, "BOB", "hello")
    assert bob.take() == [DirectMessage("alice", "hello")]
    assert alice.take() == []


def test_direct_message_to_self(router):
    alice = Person(router, "alice")
    router.send_direct(alice.presence, "alice", "note")
    assert alice.take() == [DirectMessage("alice", "note")]


def test_direct_message_unknown_user(router):
    alice = Person(router, "alice")
    with pytest.raises(errors.NoSuchUser, match="no such user: carol"):
        settled(router.send_direct(alice.presence, "carol", "hi"))


def test_unregistered_user_cannot_send_or_join(router):
    Person(router, "bob")
    guest = Person(router)
    with pytest.raises(errors.NotRegistered):
        router.send_direct(guest.presence, "bob", "hi")
    with pytest.raises(errors.NotRegistered):
        router.join(guest.presence, "#lobby")
    with pytest.raises(errors.NotRegistered):
        router.send_room(guest.presence, "#lobby", "hi")
    with pytest.raises(errors.NotRegistered):
        router.leave(guest.presence, "#lobby")


def test_unregistered_user_cannot_be_reached(router):
    alice = Person(router, "alice")
    Person(router)
    with pytest.raises(errors.NoSuchUser):
        settled(router.send_direct(alice.presence, "None", "hi"))


def test_join_creates_room_and_announces(router):
    alice, bob = Person(router, "alice"), Person(router, "bob")
    router.join(alice.presence, "#Lobby")
    assert alice.take() == [Joined("#Lobby", "alice"), UserList("#Lobby", ("alice",), ("alice",))]
    router.join(bob.presence, "#lobby")
    assert alice.take() == [Joined("#Lobby", "bob")]
    assert bob.take() == [Joined("#Lobby", "bob"), UserList("#Lobby", ("alice", "bob"), ("alice",))]
    assert router.rooms() == RoomList((("#Lobby", 2),))


@pytest.mark.parametrize("room", ["lobby", "#", "#1a", "##a", "#a b", "#" + "a" * 33, ""])
def test_join_invalid_room(router, room):
    alice = Person(router, "alice")
    with pytest.raises(errors.InvalidRoomName):
        router.join(alice.presence, room)
    assert router.rooms() == RoomList(())


def test_join_twice(router):
    alice = Person(router, "alice")
    router.join(alice.presence, "#lobby")
    with pytest.raises(errors.AlreadyInRoom, match="you are already in #lobby"):
        router.join(alice.presence, "#LOBBY")


def test_room_message_reaches_every_member_and_sender(router):
    people = [Person(router, f"user{n}") for n in range(4)]
    for person in people:
        router.join(person.presence, "#lobby")
    outsider = Person(router, "outsider")
    for person in people:
        person.take()
    router.send_room(people[0].presence, "#LOBBY", "hi all")
    for person in people:
        assert person.take() == [RoomMessage("#lobby", "user0", "hi all")]
    assert outsider.take() == []


def test_room_message_needs_membership(router):
    alice, bob = Person(router, "alice"), Person(router, "bob")
    router.join(alice.presence, "#lobby")
    with pytest.raises(errors.NotInRoom, match="you are not in #lobby"):
        router.send_room(bob.presence, "#lobby", "hi")


def test_room_message_unknown_room(router):
    alice = Person(router, "alice")
    with pytest.raises(errors.NoSuchRoom, match="no such room: #nowhere"):
        router.send_room(alice.presence, "#nowhere", "hi")


@pytest.mark.parametrize("name", ["#", "#1abc", "#a.b", "#" + "a" * 33, "lobby"])
def test_room_message_to_an_invalid_room_name(router, name):
    alice = Person(router, "alice")
    with pytest.raises(errors.InvalidRoomName):
        router.send_room(alice.presence, name, "hi")
    with pytest.raises(errors.InvalidRoomName):
        router.send_room(alice.presence, name, "waves", action=True)


def test_one_failing_member_does_not_stop_the_others(router):
    alice, bob, carol = (Person(router, nick) for nick in ("alice", "bob", "carol"))
    for person in (alice, bob, carol):
        router.join(person.presence, "#lobby")
    for person in (alice, bob, carol):
        person.take()

    def broken(event):
        raise RuntimeError("transport gone")

    bob.participant.deliver = broken  # type: ignore[method-assign]
    with capturedLogs() as logs:
        router.send_room(alice.presence, "#lobby", "still here")
    assert carol.take() == [RoomMessage("#lobby", "alice", "still here")]
    assert alice.take() == [RoomMessage("#lobby", "alice", "still here")]
    assert any(event.get("log_failure") for event in logs)


def test_leave(router):
    alice, bob = Person(router, "alice"), Person(router, "bob")
    router.join(alice.presence, "#lobby")
    router.join(bob.presence, "#lobby")
    alice.take(), bob.take()
    router.leave(bob.presence, "#LOBBY")
    assert bob.take() == [Left("#lobby", "bob")]
    assert alice.take() == [Left("#lobby", "bob")]
    with pytest.raises(errors.NotInRoom):
        router.send_room(bob.presence, "#lobby", "hi")


def test_leave_with_a_reason(router):
    alice, bob = Person(router, "alice"), Person(router, "bob")
    router.join(alice.presence, "#lobby")
    router.join(bob.presence, "#lobby")
    alice.take(), bob.take()
    with pytest.raises(errors.ReasonTooLong):
        router.leave(bob.presence, "#lobby", "r" * 391)
    router.leave(bob.presence, "#lobby", "lunch")
    assert bob.take() == alice.take() == [Left("#lobby", "bob", reason="lunch")]


def test_disconnect_with_a_quit_reason(router):
    alice, bob = Person(router, "alice"), Person(router, "bob")
    router.join(alice.presence, "#lobby")
    router.join(bob.presence, "#lobby")
    alice.take()
    router.disconnect(bob.presence, reason="q" * 400)
    assert alice.take() == [Left("#lobby", "bob", disconnected=True, reason="q" * 390)]


def test_counts_of_users_unregistered_rooms_and_the_peak(router):
    alice, bob, _ = Person(router, "alice"), Person(router, "bob"), Person(router)
    router.join(alice.presence, "#lobby")
    router.disconnect(bob.presence)
    assert router.counts() == Counts(users=1, unregistered=1, rooms=1, peak_users=2)


def test_leaving_last_member_removes_room(router):
    alice = Person(router, "alice")
    router.join(alice.presence, "#lobby")
    router.leave(alice.presence, "#lobby")
    assert router.rooms() == RoomList(())
    with pytest.raises(errors.NoSuchRoom):
        router.who("#lobby")


def test_leave_errors(router):
    alice, bob = Person(router, "alice"), Person(router, "bob")
    with pytest.raises(errors.NoSuchRoom):
        router.leave(alice.presence, "#lobby")
    router.join(bob.presence, "#lobby")
    with pytest.raises(errors.NotInRoom):
        router.leave(alice.presence, "#lobby")


def test_disconnect_leaves_rooms_and_frees_name(router):
    alice, bob = Person(router, "alice"), Person(router, "bob")
    for room in ("#a", "#b"):
        router.join(alice.presence, room)
    router.join(bob.presence, "#a")
    bob.take()
    router.disconnect(alice.presence)
    assert bob.take() == [Left("#a", "alice", disconnected=True)]
    assert router.rooms() == RoomList((("#a", 1),))
    assert router.who() == UserList(None, ("bob",))
    newcomer = Person(router)
    router.register(newcomer.presence, "alice")
    with pytest.raises(errors.NoSuchUser):
        settled(router.send_direct(bob.presence, "ghost", "hi"))


def test_disconnect_unregistered_is_harmless(router):
    guest = Person(router)
    router.disconnect(guest.presence)
    assert router.who() == UserList(None, ())


def test_who_and_rooms_sorted_case_insensitively(router):
    for nick in ("carol", "Bob", "alice"):
        person = Person(router, nick)
        router.join(person.presence, f"#{nick}room")
    assert router.who() == UserList(None, ("alice", "Bob", "carol"))
    assert router.rooms() == RoomList((("#aliceroom", 1), ("#Bobroom", 1), ("#carolroom", 1)))


def test_who_unknown_room(router):
    with pytest.raises(errors.NoSuchRoom):
        router.who("#nowhere")


def make_account(chat, nick, password="secret123"):
    """A registered account, created through the rules, then logged out."""
    person = Person(chat.router, nick)
    settled(Deferred.fromCoroutine(chat.accounts.create(person.presence, password)))
    chat.router.disconnect(person.presence)
    return person


def test_guest_cannot_take_a_registered_name(chat):
    make_account(chat, "alice")
    guest = Person(chat.router)
    with pytest.raises(errors.NameRegistered, match="alice is a registered account"):
        settled(chat.router.register(guest.presence, "ALICE"))
    assert guest.presence.nick is None
    assert guest.take() == []


def test_message_to_offline_account_is_kept_and_delivered_at_login(chat):
    make_account(chat, "alice")
    bob = Person(chat.router, "bob")
    settled(chat.router.send_direct(bob.presence, "Alice", "first"))
    chat.clock.advance(60)
    settled(chat.router.send_direct(bob.presence, "alice", "second"))
    assert bob.take() == [StoredForLater("alice"), StoredForLater("alice")]
    alice = Person(chat.router)
    settled(chat.router.log_in(alice.presence, "alice"))
    start = 1_800_000_000
    assert alice.take() == [
        LoggedIn("alice", 2),
        Replayed(start, DirectMessage("bob", "first")),
        Replayed(start + 60, DirectMessage("bob", "second")),
    ]
    assert settled(chat.storage.pending_messages("alice")) == []
    again = Person(chat.router)
    settled(chat.router.log_in(again.presence, "alice"))
    assert again.take() == [LoggedIn("alice", 0)]


def test_offline_guest_or_unknown_name_is_an_error(chat):
    bob = Person(chat.router, "bob")
    with pytest.raises(errors.NoSuchUser):
        settled(chat.router.send_direct(bob.presence, "nobody", "hi"))
    assert settled(chat.storage.pending_messages("nobody")) == []


def test_offline_cap(chat):
    chat.router.settings = RouterSettings(offline_cap=2)
    make_account(chat, "alice")
    bob = Person(chat.router, "bob")
    for text in ("one", "two"):
        settled(chat.router.send_direct(bob.presence, "alice", text))
    with pytest.raises(errors.MailboxFull, match="alice is offline and has too many"):
        settled(chat.router.send_direct(bob.presence, "alice", "three"))


def test_second_login_closes_the_first(chat):
    make_account(chat, "alice")
    bob = Person(chat.router, "bob")
    first, second = Person(chat.router), Person(chat.router)
    settled(chat.router.log_in(first.presence, "alice"))
    chat.router.join(first.presence, "#lobby")
    chat.router.join(bob.presence, "#lobby")
    bob.take()
    settled(chat.router.log_in(second.presence, "alice"))
    assert first.participant.closed == "logged in from another connection"
    assert first.presence.nick is None
    assert bob.take() == [Left("#lobby", "alice", disconnected=True)]
    chat.router.send_direct(bob.presence, "alice", "which one?")
    assert second.take()[-1] == DirectMessage("bob", "which one?")
    assert first.take() == [
        LoggedIn("alice", 0),
        Joined("#lobby", "alice"),
        UserList("#lobby", ("alice",), ("alice",)),
        Joined("#lobby", "bob"),
    ]


def test_renaming_away_from_an_account_leaves_it(chat):
    make_account(chat, "alice")
    alice = Person(chat.router)
    settled(chat.router.log_in(alice.presence, "alice"))
    settled(chat.router.register(alice.presence, "ALICE"))
    assert alice.presence.account
    settled(chat.router.register(alice.presence, "other"))
    assert not alice.presence.account


def test_require_account_lets_guests_only_look(chat):
    chat.router.settings = RouterSettings(require_account=True)
    make_account(chat, "alice")
    guest = Person(chat.router, "guest")
    for attempt in (
        lambda: chat.router.send_direct(guest.presence, "alice", "hi"),
        lambda: chat.router.join(guest.presence, "#lobby"),
    ):
        with pytest.raises(errors.AccountRequired):
            attempt()
    assert chat.router.who() == UserList(None, ("guest",))
    alice = Person(chat.router)
    settled(chat.router.log_in(alice.presence, "alice"))
    settled(chat.router.join(alice.presence, "#lobby"))


def test_room_messages_are_kept_and_replayed_on_join(chat):
    alice, bob = Person(chat.router, "alice"), Person(chat.router, "bob")
    chat.router.join(alice.presence, "#lobby")
    for n in range(25):
        chat.clock.advance(1)
        chat.router.send_room(alice.presence, "#lobby", f"m{n}")
    bob.take()
    settled(chat.router.join(bob.presence, "#Lobby"))
    events = bob.take()
    assert events[:3] == [
        Joined("#lobby", "bob"),
        UserList("#lobby", ("alice", "bob"), ("alice",)),
        HistoryStart("#lobby", 20),
    ]
    assert events[3:] == [
        Replayed(1_800_000_000 + n + 1, RoomMessage("#lobby", "alice", f"m{n}"))
        for n in range(5, 25)
    ]


def test_first_join_of_a_room_without_history_says_nothing_more(chat):
    alice = Person(chat.router, "alice")
    settled(chat.router.join(alice.presence, "#new"))
    assert alice.take() == [Joined("#new", "alice"), UserList("#new", ("alice",), ("alice",))]


def test_history_command(chat):
    chat.router.settings = RouterSettings(max_history=3)
    alice, bob = Person(chat.router, "alice"), Person(chat.router, "bob")
    chat.router.join(alice.presence, "#lobby")
    for n in range(5):
        chat.router.send_room(alice.presence, "#lobby", f"m{n}")
    alice.take()
    settled(chat.router.history(alice.presence, "#lobby", 2))
    assert [event for event in alice.take() if isinstance(event, Replayed)] == [
        Replayed(1_800_000_000, RoomMessage("#lobby", "alice", f"m{n}")) for n in (3, 4)
    ]
    settled(chat.router.history(alice.presence, "#lobby", 100))
    assert alice.take()[0] == HistoryStart("#lobby", 3)
    settled(chat.router.history(alice.presence, "#lobby", 0))
    assert alice.take() == [HistoryStart("#lobby", 0)]
    with pytest.raises(errors.NotInRoom):
        chat.router.history(bob.presence, "#lobby", None)
    with pytest.raises(errors.NoSuchRoom):
        chat.router.history(bob.presence, "#nowhere", None)


@pytest.mark.parametrize(
    "attempt",
    [
        lambda router, session: router.leave(session, "lobby"),
        lambda router, session: router.who("lobby"),
        lambda router, session: router.send_room(session, "lobby", "hi"),
        lambda router, session: router.history(session, "lobby", None),
    ],
)
def test_a_room_name_without_hash_is_called_invalid(router, attempt):
    alice = Person(router, "alice")
    router.join(alice.presence, "#lobby")
    with pytest.raises(errors.InvalidRoomName):
        attempt(router, alice.presence)


def test_shutting_down_tells_everyone_once_without_leaving_notices(router):
    alice, bob = Person(router, "alice"), Person(router, "bob")
    for person in (alice, bob):
        settled(router.join(person.presence, "#lobby"))
    alice.take()
    bob.take()
    router.close_all("the server is shutting down")
    assert alice.take() == [] and bob.take() == []
    assert alice.participant.closed == bob.participant.closed == "the server is shutting down"


# Topics, operators, kicks, bans and actions.


def room_of(router, *nicks):
    """People with C{nicks} in #lobby, the first its creator; their events so far dropped."""
    people = [Person(router, nick) for nick in nicks]
    for person in people:
        settled(router.join(person.presence, "#lobby"))
    for person in people:
        person.take()
    return people


def test_the_creator_is_the_first_operator(router):
    room_of(router, "alice", "bob")
    assert router.who("#lobby") == UserList("#lobby", ("alice", "bob"), ("alice",))


def test_an_operator_sets_the_topic_and_every_member_is_told(router):
    alice, bob = room_of(router, "alice", "bob")
    router.set_topic(alice.presence, "#LOBBY", "release on friday")
    assert alice.take() == bob.take() == [TopicChanged("#lobby", "alice", "release on friday")]
    assert router.topic("#lobby") == RoomTopic(
        "#lobby", "release on friday", "alice", 1_800_000_000
    )


def test_the_topic_keeps_who_set_it_and_when(router, chat):
    alice, bob = room_of(router, "alice", "bob")
    router.set_operator(alice.presence, "#lobby", "bob", True)
    router.set_topic(alice.presence, "#lobby", "first")
    chat.clock.advance(30)
    router.set_topic(bob.presence, "#lobby", "second")
    assert router.topic("#lobby") == RoomTopic("#lobby", "second", "bob", 1_800_000_030)
    router.set_topic(bob.presence, "#lobby", None)
    assert router.topic("#lobby") == RoomTopic("#lobby", None)


def test_clearing_the_topic(router):
    (alice,) = room_of(router, "alice")
    router.set_topic(alice.presence, "#lobby", "x")
    router.set_topic(alice.presence, "#lobby", None)
    assert alice.take()[-1] == TopicChanged("#lobby", "alice", None)
    assert router.topic("#lobby") == RoomTopic("#lobby", None)


def test_only_operators_set_the_topic(router):
    alice, bob = room_of(router, "alice", "bob")
    with pytest.raises(errors.OperatorRequired):
        router.set_topic(bob.presence, "#lobby", "mine")
    carol = Person(router, "carol")
    with pytest.raises(errors.NotInRoom):
        router.set_topic(carol.presence, "#lobby", "mine")
    assert router.topic("#lobby") == RoomTopic("#lobby", None)
    assert alice.take() == bob.take() == []


def test_topic_length_limit(router):
    (alice,) = room_of(router, "alice")
    router.set_topic(alice.presence, "#lobby", "t" * 390)
    with pytest.raises(errors.TopicTooLong) as raised:
        router.set_topic(alice.presence, "#lobby", "t" * 391)
    assert raised.value == errors.TopicTooLong(390)
    assert router.topic("#lobby") == RoomTopic("#lobby", "t" * 390, "alice", 1_800_000_000)


def test_joiners_get_the_topic_after_the_member_list(router):
    (alice,) = room_of(router, "alice")
    router.set_topic(alice.presence, "#lobby", "welcome")
    bob = Person(router, "bob")
    router.join(bob.presence, "#lobby")
    assert bob.take() == [
        Joined("#lobby", "bob"),
        UserList("#lobby", ("alice", "bob"), ("alice",)),
        RoomTopic("#lobby", "welcome", "alice", 1_800_000_000),
    ]


def test_the_topic_goes_with_the_room(router):
    (alice,) = room_of(router, "alice")
    router.set_topic(alice.presence, "#lobby", "welcome")
    router.leave(alice.presence, "#lobby")
    router.join(alice.presence, "#lobby")
    assert RoomTopic("#lobby", "welcome") not in alice.take()


def test_op_and_deop_are_told_to_every_member(router):
    alice, bob, carol = room_of(router, "alice", "bob", "carol")
    router.set_operator(alice.presence, "#lobby", "BOB", True)
    told = [OperatorChanged("#lobby", "bob", "alice", True)]
    assert alice.take() == bob.take() == carol.take() == told
    router.set_operator(bob.presence, "#lobby", "alice", False)
    told = [OperatorChanged("#lobby", "alice", "bob", False)]
    assert alice.take() == bob.take() == carol.take() == told
    assert router.who("#lobby").operators == ("bob",)


@pytest.mark.parametrize(
    ("who", "target", "operator", "error"),
    [
        ("bob", "carol", True, errors.OperatorRequired("#lobby")),
        ("alice", "dave", True, errors.NoSuchMember("#lobby", "dave")),
        ("alice", "ALICE", True, errors.AlreadyOperator("#lobby", "alice")),
        ("alice", "bob", False, errors.NotOperator("#lobby", "bob")),
    ],
)
def test_op_and_deop_refused(router, who, target, operator, error):
    people = {person.presence.nick: person for person in room_of(router, "alice", "bob", "carol")}
    Person(router, "dave")
    with pytest.raises(type(error)) as raised:
        router.set_operator(people[who].presence, "#lobby", target, operator)
    assert raised.value == error
    assert router.who("#lobby").operators == ("alice",)
    assert all(person.take() == [] for person in people.values())


def test_operators_stay_operators_when_renamed(router):
    alice, _ = room_of(router, "alice", "bob")
    settled(router.register(alice.presence, "alicia"))
    assert router.who("#lobby").operators == ("alicia",)
    router.set_topic(alice.presence, "#lobby", "still op")


def test_when_the_last_operator_leaves_nobody_is_operator(router):
    alice, bob = room_of(router, "alice", "bob")
    router.leave(alice.presence, "#lobby")
    assert router.who("#lobby") == UserList("#lobby", ("bob",), ())
    router.join(alice.presence, "#lobby")
    assert router.who("#lobby").operators == ()
    with pytest.raises(errors.OperatorRequired):
        router.kick(bob.presence, "#lobby", "alice", None)


def test_kick_tells_every_member_and_the_kicked_then_takes_it_out(router):
    alice, bob, carol = room_of(router, "alice", "bob", "carol")
    router.kick(alice.presence, "#lobby", "Bob", "spam")
    told = [Kicked("#lobby", "bob", "alice", "spam")]
    assert alice.take() == bob.take() == carol.take() == told
    assert router.who("#lobby").nicks == ("alice", "carol")
    assert "#lobby" not in bob.presence.rooms
    router.send_room(alice.presence, "#lobby", "after")
    assert bob.take() == []
    router.join(bob.presence, "#lobby")  # a kick is no ban


def test_kick_without_a_reason_and_of_an_operator(router):
    alice, bob = room_of(router, "alice", "bob")
    router.set_operator(alice.presence, "#lobby", "bob", True)
    router.kick(bob.presence, "#lobby", "alice", None)
    assert bob.take()[-1] == Kicked("#lobby", "alice", "bob", None)
    assert router.who("#lobby") == UserList("#lobby", ("bob",), ("bob",))


def test_kicking_the_last_member_closes_the_room(router):
    (alice,) = room_of(router, "alice")
    router.kick(alice.presence, "#lobby", "alice", None)
    assert alice.take() == [Kicked("#lobby", "alice", "alice", None)]
    assert router.rooms() == RoomList(())


@pytest.mark.parametrize(
    ("who", "target", "reason", "error"),
    [
        ("bob", "alice", None, errors.OperatorRequired("#lobby")),
        ("alice", "carol", None, errors.NoSuchMember("#lobby", "carol")),
        ("alice", "bob", "r" * 391, errors.ReasonTooLong(390)),
    ],
)
def test_kick_refused(router, who, target, reason, error):
    people = {person.presence.nick: person for person in room_of(router, "alice", "bob")}
    Person(router, "carol")
    with pytest.raises(type(error)) as raised:
        router.kick(people[who].presence, "#lobby", target, reason)
    assert raised.value == error
    assert router.who("#lobby").nicks == ("alice", "bob")


def test_ban_tells_every_member_kicks_and_keeps_the_name_out(router):
    alice, bob, carol = room_of(router, "alice", "bob", "carol")
    router.set_ban(alice.presence, "#lobby", "BOB", True)
    told = [BanChanged("#lobby", "bob", "alice", True), Kicked("#lobby", "bob", "alice")]
    assert alice.take() == bob.take() == carol.take() == told
    with pytest.raises(errors.BannedFromRoom) as raised:
        router.join(bob.presence, "#LOBBY")
    assert raised.value == errors.BannedFromRoom("#lobby")
    assert router.bans("#lobby") == BanList("#lobby", ("bob",))


def test_a_name_not_in_the_room_can_be_banned_in_any_case(router):
    (alice,) = room_of(router, "alice")
    router.set_ban(alice.presence, "#lobby", "Dave", True)
    assert alice.take() == [BanChanged("#lobby", "Dave", "alice", True)]
    dave = Person(router, "DAVE")
    with pytest.raises(errors.BannedFromRoom):
        router.join(dave.presence, "#lobby")


def test_unban_lets_the_name_in_again(router):
    alice, carol = room_of(router, "alice", "carol")
    router.set_ban(alice.presence, "#lobby", "bob", True)
    router.set_ban(alice.presence, "#lobby", "BOB", False)
    assert (
        alice.take()
        == carol.take()
        == [
            BanChanged("#lobby", "bob", "alice", True),
            BanChanged("#lobby", "bob", "alice", False),
        ]
    )
    assert router.bans("#lobby") == BanList("#lobby", ())
    bob = Person(router, "bob")
    router.join(bob.presence, "#lobby")


@pytest.mark.parametrize(
    ("who", "target", "banned", "error"),
    [
        ("bob", "carol", True, errors.OperatorRequired("#lobby")),
        ("alice", "no one", True, errors.InvalidNickname("no one")),
        ("alice", "carol", False, errors.NotBanned("#lobby", "carol")),
        ("alice", "Dave", True, errors.AlreadyBanned("#lobby", "dave")),
    ],
)
def test_ban_and_unban_refused(router, who, target, banned, error):
    people = {person.presence.nick: person for person in room_of(router, "alice", "bob")}
    router.set_ban(people["alice"].presence, "#lobby", "dave", True)
    people["alice"].take(), people["bob"].take()
    with pytest.raises(type(error)) as raised:
        router.set_ban(people[who].presence, "#lobby", target, banned)
    assert raised.value == error
    assert router.bans("#lobby") == BanList("#lobby", ("dave",))
    assert people["alice"].take() == people["bob"].take() == []


def test_bans_go_with_the_room(router):
    (alice,) = room_of(router, "alice")
    router.set_ban(alice.presence, "#lobby", "bob", True)
    router.leave(alice.presence, "#lobby")
    bob = Person(router, "bob")
    router.join(bob.presence, "#lobby")
    assert router.who("#lobby") == UserList("#lobby", ("bob",), ("bob",))


def test_room_actions_reach_every_member_and_history(chat):
    alice, bob = room_of(chat.router, "alice", "bob")
    chat.router.send_room(alice.presence, "#lobby", "waves", True)
    assert alice.take() == bob.take() == [RoomMessage("#lobby", "alice", "waves", True)]
    settled(chat.router.history(bob.presence, "#lobby", 5))
    assert bob.take()[1:] == [
        Replayed(1_800_000_000, RoomMessage("#lobby", "alice", "waves", True))
    ]


def test_direct_actions_reach_the_user_and_are_kept_for_an_offline_account(chat):
    alice, bob = Person(chat.router, "alice"), Person(chat.router, "bob")
    chat.router.send_direct(alice.presence, "bob", "waves", True)
    assert bob.take() == [DirectMessage("alice", "waves", True)]
    make_account(chat, "carol")
    settled(chat.router.send_direct(alice.presence, "carol", "nods", True))
    carol = Person(chat.router)
    settled(chat.router.log_in(carol.presence, "carol"))
    assert carol.take()[1:] == [Replayed(1_800_000_000, DirectMessage("alice", "nods", True))]


def test_away_is_told_to_the_user_and_to_senders_of_direct_messages(router):
    alice, bob = Person(router, "alice"), Person(router, "bob")
    router.set_away(bob.presence, "lunch")
    assert bob.take() == [AwayChanged("lunch")]
    router.send_direct(alice.presence, "BOB", "hi")
    assert bob.take() == [DirectMessage("alice", "hi")]
    assert alice.take() == [IsAway("bob", "lunch")]
    router.set_away(bob.presence, None)
    assert bob.take() == [AwayChanged(None)]
    router.send_direct(alice.presence, "bob", "back?")
    assert alice.take() == []


def test_an_empty_away_message_is_back(router):
    bob = Person(router, "bob")
    router.set_away(bob.presence, "lunch")
    router.set_away(bob.presence, "")
    assert bob.take()[-1] == AwayChanged(None)
    assert router.whois("bob").away is None


def test_away_needs_a_nickname(router):
    with pytest.raises(errors.NotRegistered):
        router.set_away(Person(router).presence, "lunch")


def test_away_ends_with_the_connection(router):
    bob = Person(router, "bob")
    router.set_away(bob.presence, "lunch")
    router.disconnect(bob.presence)
    assert Person(router, "bob").presence.away is None


def test_whois_tells_client_info_defaulting_to_the_nickname(router):
    alice, bob = Person(router, "alice"), Person(router, "bob")
    router.set_client_info(bob.presence, "bobby", "Bob Smith")
    router.set_away(bob.presence, "lunch")
    assert router.whois("BOB") == UserInfo("bob", "bobby", "Bob Smith", "lunch")
    assert router.whois("alice") == UserInfo("alice", "alice", "alice", None)
    assert alice.take() == []


def test_whois_asked_by_someone_tells_the_rooms_they_may_see(router):
    alice, bob, carol = Person(router, "alice"), Person(router, "bob"), Person(router, "carol")
    for room in ("#lobby", "#hideout", "#quiet"):
        router.join(alice.presence, room)
    router.set_room_mode(alice.presence, "#hideout", SECRET, True)
    router.join(bob.presence, "#quiet")
    router.set_voice(alice.presence, "#quiet", "bob", True)
    router.join(carol.presence, "#hideout")
    assert router.whois("bob", alice.presence).rooms == (Membership("#quiet", False, True),)
    assert router.whois("alice", bob.presence).rooms == (
        Membership("#lobby", True),
        Membership("#quiet", True),
    )
    assert [member.room for member in router.whois("alice", carol.presence).rooms] == [
        "#lobby",
        "#hideout",
        "#quiet",
    ]
    assert router.whois("alice").rooms == ()


def test_whois_tells_the_account_of_a_logged_in_user(chat):
    make_account(chat, "alice")
    alice = Person(chat.router)
    settled(chat.router.log_in(alice.presence, "alice"))
    Person(chat.router, "bob")
    assert chat.router.whois("alice").account == "alice"
    assert chat.router.whois("bob").account is None


def test_whois_of_no_one_online(router):
    Person(router, "alice")
    with pytest.raises(errors.NoSuchUser) as raised:
        router.whois("carol")
    assert raised.value == errors.NoSuchUser("carol")


def test_who_with_details_tells_each_users_info_in_order(router):
    alice, bob = room_of(router, "alice", "bob")
    router.set_client_info(bob.presence, "bobby", "Bob Smith")
    router.set_away(alice.presence, "away")
    info = (UserInfo("alice", "alice", "alice", "away"), UserInfo("bob", "bobby", "Bob Smith"))
    assert router.who("#lobby", details=True) == UserList(
        "#lobby", ("alice", "bob"), ("alice",), info
    )
    assert router.who(None, details=True) == UserList(None, ("alice", "bob"), (), info)
    assert router.who("#lobby").users == ()


@pytest.mark.parametrize(
    "act",
    [
        lambda router, alice: router.set_operator(alice.presence, "#lobby", "nobody", True),
        lambda router, alice: router.kick(alice.presence, "#lobby", "nobody", None),
    ],
    ids=["op", "kick"],
)
def test_naming_someone_not_online_is_no_such_user(router, act):
    alice, _ = room_of(router, "alice", "bob")
    with pytest.raises(errors.NoSuchUser) as raised:
        act(router, alice)
    assert raised.value == errors.NoSuchUser("nobody")


def test_a_notice_to_someone_away_is_not_answered_with_their_away_message(router):
    alice, bob = Person(router, "alice"), Person(router, "bob")
    router.set_away(bob.presence, "lunch")
    bob.take()
    router.send_direct(alice.presence, "bob", "psst", notice=True)
    assert bob.take() == [DirectMessage("alice", "psst", notice=True)]
    assert alice.take() == []


def test_a_room_starts_topic_locked_and_knows_when_it_was_created(router, chat):
    room_of(router, "alice")
    assert router.room_modes("#LOBBY") == RoomModes("#lobby", (TOPIC_LOCK,), 1_800_000_000)


def test_an_operator_turns_modes_on_and_off_and_every_member_is_told(router):
    alice, bob = room_of(router, "alice", "bob")
    router.set_room_mode(alice.presence, "#lobby", SECRET, True)
    assert alice.take() == bob.take() == [RoomModeChanged("#lobby", "alice", SECRET, True)]
    with pytest.raises(errors.ModeUnchanged):
        router.set_room_mode(alice.presence, "#lobby", SECRET, True)
    with pytest.raises(errors.OperatorRequired):
        router.set_room_mode(bob.presence, "#lobby", SECRET, False)
    router.set_room_mode(alice.presence, "#lobby", TOPIC_LOCK, False)
    assert router.room_modes("#lobby").modes == (SECRET,)


def test_without_the_topic_lock_any_member_sets_the_topic(router):
    alice, bob = room_of(router, "alice", "bob")
    with pytest.raises(errors.OperatorRequired):
        router.set_topic(bob.presence, "#lobby", "mine")
    router.set_room_mode(alice.presence, "#lobby", TOPIC_LOCK, False)
    router.set_topic(bob.presence, "#lobby", "mine")
    assert router.topic("#lobby").set_by == "bob"


def test_in_a_moderated_room_only_operators_and_voiced_members_send(router):
    alice, bob, carol = room_of(router, "alice", "bob", "carol")
    router.set_room_mode(alice.presence, "#lobby", MODERATED, True)
    with pytest.raises(errors.Moderated):
        router.send_room(bob.presence, "#lobby", "hi")
    router.set_voice(alice.presence, "#lobby", "BOB", True)
    assert carol.take()[-1] == VoiceChanged("#lobby", "bob", "alice", True)
    router.send_room(bob.presence, "#lobby", "hi")
    router.send_room(alice.presence, "#lobby", "hello")
    assert [event.text for event in carol.take()] == ["hi", "hello"]
    assert router.who("#lobby").voiced == ("bob",)
    with pytest.raises(errors.AlreadyVoiced):
        router.set_voice(alice.presence, "#lobby", "bob", True)
    router.register(bob.presence, "robert")
    assert router.who("#lobby").voiced == ("robert",)
    router.leave(bob.presence, "#lobby")
    settled(router.join(bob.presence, "#lobby"))
    with pytest.raises(errors.Moderated):
        router.send_room(bob.presence, "#lobby", "again")


def test_a_secret_room_is_hidden_from_non_members(router):
    alice, bob = room_of(router, "alice", "bob")
    carol = Person(router, "carol")
    router.set_room_mode(alice.presence, "#lobby", SECRET, True)
    assert router.rooms(carol.presence) == RoomList(())
    assert router.rooms(bob.presence) == RoomList((("#lobby", 2),))
    for ask in (router.who, router.topic, router.bans, router.room_modes):
        with pytest.raises(errors.NoSuchRoom):
            ask("#lobby", asker=carol.presence)  # type: ignore[operator]
    assert router.who("#lobby", asker=bob.presence).secret
    settled(router.join(carol.presence, "#lobby"))
    assert router.who("#lobby", asker=carol.presence).nicks == ("alice", "bob", "carol")
