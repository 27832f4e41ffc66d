"""Creating accounts, logging in, changing passwords, and the throttle on guessing."""

import pytest
from twisted.internet.defer import Deferred

from chatroute.core import errors
from chatroute.core.accounts import check_new_password
from chatroute.core.events import AccountCreated, LoggedIn, PasswordChanged
from tests.conftest import Person, settled


def run(coroutine):
    return settled(Deferred.fromCoroutine(coroutine))


@pytest.fixture
def alice(chat):
    """alice, a registered account, logged in."""
    person = Person(chat.router, "alice")
    run(chat.accounts.create(person.presence, "secret123"))
    person.take()
    return person


def log_in(chat, name, password, address="192.0.2.1"):
    person = Person(chat.router)
    run(chat.accounts.log_in(person.presence, name, password, address))
    return person


def test_create(chat):
    person = Person(chat.router, "Alice")
    run(chat.accounts.create(person.presence, "secret123"))
    assert person.take() == [AccountCreated("Alice")]
    assert person.presence.account
    account = settled(chat.storage.get_account("alice"))
    assert account.name == "Alice"
    assert "secret123" not in account.password_hash
    assert account.password_hash.startswith("$argon2id$")


def test_create_needs_a_nickname(chat):
    with pytest.raises(errors.NotRegistered):
        run(chat.accounts.create(Person(chat.router).presence, "secret123"))


def test_create_twice(chat, alice):
    with pytest.raises(errors.AccountExists, match="alice is already registered"):
        run(chat.accounts.create(alice.presence, "secret456"))


@pytest.mark.parametrize("password", ["short", "x" * 1025, "", "seven77"])
def test_password_rule(password):
    with pytest.raises(errors.BadPassword) as raised:
        check_new_password(password)
    assert raised.value == errors.BadPassword(8, 1024)


@pytest.mark.parametrize("password", ["has space1", "x" * 1024, "correct horse battery staple"])
def test_password_rule_allows(password):
    check_new_password(password)


@pytest.mark.parametrize("password", ["  seven77  ", "a  b  c  d", "a\t\tb\t\tc\t\td"])
def test_password_rule_counts_after_normalising(chat, password):
    person = Person(chat.router, "alice")
    with pytest.raises(errors.BadPassword):
        run(chat.accounts.create(person.presence, password))


def test_passphrase(chat):
    person = Person(chat.router, "alice")
    run(chat.accounts.create(person.presence, "correct horse battery staple"))
    chat.router.disconnect(person.presence)
    assert log_in(chat, "alice", " correct   horse\tbattery staple  ").presence.account


def test_passphrase_is_not_its_words_run_together(chat):
    person = Person(chat.router, "alice")
    run(chat.accounts.create(person.presence, "correct horse battery staple"))
    chat.router.disconnect(person.presence)
    with pytest.raises(errors.LoginFailed):
        log_in(chat, "alice", "correcthorsebatterystaple")


def test_log_in(chat, alice):
    chat.router.disconnect(alice.presence)
    person = log_in(chat, "ALICE", "secret123")
    assert person.take() == [LoggedIn("alice", 0)]
    assert person.presence.nick == "alice"
    assert person.presence.account


@pytest.mark.parametrize(("name", "password"), [("alice", "wrong-one"), ("nobody", "secret123")])
def test_wrong_name_or_password_look_alike(chat, alice, name, password):
    with pytest.raises(errors.LoginFailed, match="wrong nickname or password"):
        log_in(chat, name, password)


def test_failures_slow_down_then_lock_out(chat, alice):
    for _ in range(2):
        with pytest.raises(errors.LoginFailed):
            log_in(chat, "alice", "wrong-one")
    with pytest.raises(errors.LoginFailed):
        log_in(chat, "alice", "wrong-one")
    with pytest.raises(errors.LoginThrottled, match=r"wait 1 s"):
        log_in(chat, "alice", "secret123")
    for _ in range(7):
        chat.clock.advance(61)
        with pytest.raises(errors.LoginFailed):
            log_in(chat, "alice", "wrong-one")
    chat.clock.advance(61)
    with pytest.raises(errors.LoginThrottled, match=r"wait \d+ s"):
        log_in(chat, "alice", "secret123", address="198.51.100.7")
    chat.clock.advance(15 * 60)
    assert log_in(chat, "alice", "secret123", address="198.51.100.7").presence.account


def test_throttle_is_per_address_too(chat, alice):
    for name in ("x1", "x2", "x3"):
        with pytest.raises(errors.LoginFailed):
            log_in(chat, name, "wrong-one", address="203.0.113.9")
    with pytest.raises(errors.LoginThrottled):
        log_in(chat, "alice", "secret123", address="203.0.113.9")
    assert log_in(chat, "alice", "secret123", address="192.0.2.44").presence.account


def test_change_password(chat, alice):
    run(chat.accounts.change_password(alice.presence, "secret123", "newsecret1", "192.0.2.1"))
    assert alice.take() == [PasswordChanged()]
    chat.router.disconnect(alice.presence)
    with pytest.raises(errors.LoginFailed):
        log_in(chat, "alice", "secret123")
    assert log_in(chat, "alice", "newsecret1").presence.account


def test_change_password_checks_the_old_one(chat, alice):
    with pytest.raises(errors.WrongPassword) as raised:
        run(chat.accounts.change_password(alice.presence, "wrong-one", "newsecret1", "192.0.2.1"))
    assert str(raised.value) == "wrong password"


def test_wrong_old_passwords_are_throttled(chat, alice):
    for _ in range(3):
        with pytest.raises(errors.WrongPassword):
            run(
                chat.accounts.change_password(
                    alice.presence, "wrong-one", "newsecret1", "192.0.2.1"
                )
            )
    with pytest.raises(errors.LoginThrottled):
        run(chat.accounts.change_password(alice.presence, "secret123", "newsecret1", "192.0.2.1"))


def test_change_to_a_passphrase(chat, alice):
    old, new = " secret123 ", "  new   pass\tphrase "
    run(chat.accounts.change_password(alice.presence, old, new, "192.0.2.1"))
    chat.router.disconnect(alice.presence)
    assert log_in(chat, "alice", "new pass phrase").presence.account


def test_change_password_needs_a_login(chat):
    guest = Person(chat.router, "guest")
    with pytest.raises(errors.NotLoggedIn):
        run(chat.accounts.change_password(guest.presence, "secret123", "newsecret1", "192.0.2.1"))


def test_new_password_must_follow_the_rule(chat, alice):
    with pytest.raises(errors.BadPassword):
        run(chat.accounts.change_password(alice.presence, "secret123", "short", "192.0.2.1"))
