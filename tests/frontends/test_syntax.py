"""Parsing client lines and formatting events: every form, good and bad."""

import re

import pytest

from chatroute.core import errors
from chatroute.core.events import (
    AccountCreated,
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
    Notice,
    OperatorChanged,
    PasswordChanged,
    Registered,
    Renamed,
    Replayed,
    RoomList,
    RoomMessage,
    RoomTopic,
    StoredForLater,
    TopicChanged,
    UserInfo,
    UserList,
)
from chatroute.frontends.syntax import (
    HELP,
    ChangePassword,
    CreateAccount,
    Help,
    History,
    Join,
    Kick,
    Leave,
    ListBans,
    ListRooms,
    Quit,
    Register,
    SendDirect,
    SendRoom,
    SetAway,
    SetBan,
    SetOperator,
    SetTopic,
    ShowTopic,
    Who,
    Whois,
    format_error,
    format_event,
    parse_line,
)

PASSWORD_USAGE = 'usage: /password old new, or with spaces: /password "old words" "new words"'
TOPIC_USAGE = "usage: /topic #room [text], or /topic #room - to clear it"
ACTION_USAGE = "usage: /me #room action, or /me name action"


@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("#alice", Register("alice")),
        ("  #alice  ", Register("alice")),
        ("#", Register("")),
        ("#alice secret", Register("alice", "secret")),
        ("#alice  two words ", Register("alice", "two words")),
        ("/login alice secret", Register("alice", "secret")),
        ("/LOGIN Alice s3cr3t!", Register("Alice", "s3cr3t!")),
        ("/register secret123", CreateAccount("secret123")),
        ("/password old new", ChangePassword("old", "new")),
        ("/register correct horse battery staple", CreateAccount("correct horse battery staple")),
        ("/register   spaced  out  ", CreateAccount("spaced  out")),
        ("/login alice correct horse", Register("alice", "correct horse")),
        (
            '/password "correct horse" "battery staple"',
            ChangePassword("correct horse", "battery staple"),
        ),
        ('/password  "a b"   "c d"  ', ChangePassword("a b", "c d")),
        ('/password old "new words"', ChangePassword("old", "new words")),
        ('/password "old words" new', ChangePassword("old words", "new")),
        ('/password "say \\"hi\\"" "back\\\\slash"', ChangePassword('say "hi"', "back\\slash")),
        ('/password "a\\b" "\\\\"', ChangePassword("a\\b", "\\")),
        ('/password pass"word new"one', ChangePassword('pass"word', 'new"one')),
        ('/password "" new', ChangePassword("", "new")),
        ("/history #lobby", History("#lobby", None)),
        ("/history #lobby 50", History("#lobby", 50)),
        ("@bob:hello there", SendDirect("bob", "hello there")),
        ("@bob: spaced ", SendDirect("bob", "spaced")),
        ("@bob:a:b:c", SendDirect("bob", "a:b:c")),
        ("@bob:\tindented", SendDirect("bob", "indented")),
        ("@bob:héllo ✓", SendDirect("bob", "héllo ✓")),
        ("@#lobby:hi all", SendRoom("#lobby", "hi all")),
        ("/join #lobby", Join("#lobby")),
        ("/JOIN #lobby", Join("#lobby")),
        ("/join   #lobby  ", Join("#lobby")),
        ("/leave #lobby", Leave("#lobby")),
        ("/leave #lobby off to lunch", Leave("#lobby", "off to lunch")),
        ("/leave #lobby   see you: later  ", Leave("#lobby", "see you: later")),
        ("/rooms", ListRooms()),
        ("/who", Who(None)),
        ("/who #lobby", Who("#lobby")),
        ("/whois bob", Whois("bob")),
        ("/WHOIS  bob ", Whois("bob")),
        ("/away gone  fishing", SetAway("gone  fishing")),
        ("/away", SetAway(None)),
        ("/away   ", SetAway(None)),
        ("/help", Help()),
        ("/quit", Quit()),
        ("/quit gone home", Quit("gone home")),
        ("/QUIT  bye all ", Quit("bye all")),
        ("/me #lobby waves", SendRoom("#lobby", "waves", True)),
        ("/ME  #lobby   waves  hello ", SendRoom("#lobby", "waves  hello", True)),
        ("/me bob waves: hi", SendDirect("bob", "waves: hi", True)),
        ("/topic #lobby", ShowTopic("#lobby")),
        ("/topic  #lobby  ", ShowTopic("#lobby")),
        ("/topic #lobby release: friday ", SetTopic("#lobby", "release: friday")),
        ("/topic #lobby -", SetTopic("#lobby", None)),
        ("/topic #lobby - not cleared", SetTopic("#lobby", "- not cleared")),
        ("/topic lobby text", SetTopic("lobby", "text")),
        ("/op #lobby bob", SetOperator("#lobby", "bob", True)),
        ("/OP  #lobby  bob ", SetOperator("#lobby", "bob", True)),
        ("/deop #lobby bob", SetOperator("#lobby", "bob", False)),
        ("/kick #lobby bob", Kick("#lobby", "bob")),
        ("/kick #lobby bob  spamming:  links ", Kick("#lobby", "bob", "spamming:  links")),
        ("/ban #lobby bob", SetBan("#lobby", "bob", True)),
        ("/unban #lobby bob", SetBan("#lobby", "bob", False)),
        ("/bans #lobby", ListBans("#lobby")),
        ("", None),
        ("   ", None),
        ("\t", None),
    ],
)
def test_parse(line, command):
    assert parse_line(line.encode()) == command


@pytest.mark.parametrize(
    ("line", "error", "reply"),
    [
        ("@bob", errors.MalformedLine, "expected @name:message or @#room:message"),
        ("@:hello", errors.MalformedLine, "expected @name:message or @#room:message"),
        ("@ :hello", errors.MalformedLine, "expected @name:message or @#room:message"),
        ("@bob:", errors.EmptyMessage, "empty message"),
        ("@bob:   ", errors.EmptyMessage, "empty message"),
        ("@#lobby:", errors.EmptyMessage, "empty message"),
        ("hello", errors.MalformedLine, "unrecognised line"),
        ("/nope", errors.UnknownCommand, "unknown command: /nope (try /help)"),
        ("/", errors.UnknownCommand, "unknown command: / (try /help)"),
        ("/join", errors.MalformedLine, "usage: /join #room"),
        ("/join #a #b", errors.MalformedLine, "usage: /join #room"),
        ("/leave", errors.MalformedLine, "usage: /leave #room [reason]"),
        ("/leave   ", errors.MalformedLine, "usage: /leave #room [reason]"),
        ("/who #a #b", errors.MalformedLine, "usage: /who #room"),
        ("/whois", errors.MalformedLine, "usage: /whois name"),
        ("/whois bob carol", errors.MalformedLine, "usage: /whois name"),
        ("/rooms now", errors.MalformedLine, "usage: /rooms"),
        ("/help me", errors.MalformedLine, "usage: /help"),
        ("/login", errors.MalformedLine, "usage: /login name password"),
        ("/login alice", errors.MalformedLine, "usage: /login name password"),
        ("/register", errors.MalformedLine, "usage: /register password"),
        ("/password", errors.MalformedLine, PASSWORD_USAGE),
        ("/password onlyone", errors.MalformedLine, PASSWORD_USAGE),
        ("/password one two three", errors.MalformedLine, PASSWORD_USAGE),
        ('/password "only one"', errors.MalformedLine, PASSWORD_USAGE),
        ('/password "a b" "c d" e', errors.MalformedLine, PASSWORD_USAGE),
        ('/password "unterminated new', errors.MalformedLine, PASSWORD_USAGE),
        ('/password "old\\" new', errors.MalformedLine, PASSWORD_USAGE),
        ('/password "old"new other', errors.MalformedLine, PASSWORD_USAGE),
        ('/password "old" "new"x', errors.MalformedLine, PASSWORD_USAGE),
        ("/history", errors.MalformedLine, "usage: /history #room [N]"),
        ("/history #a many", errors.MalformedLine, "usage: /history #room [N]"),
        ("/history #a -1", errors.MalformedLine, "usage: /history #room [N]"),
        ("/history #a \uff15", errors.MalformedLine, "usage: /history #room [N]"),
        ("/history #a 1 2", errors.MalformedLine, "usage: /history #room [N]"),
        ("/me", errors.MalformedLine, ACTION_USAGE),
        ("/me #lobby", errors.MalformedLine, ACTION_USAGE),
        ("/me bob  ", errors.MalformedLine, ACTION_USAGE),
        ("/topic", errors.MalformedLine, TOPIC_USAGE),
        ("/topic   ", errors.MalformedLine, TOPIC_USAGE),
        ("/op", errors.MalformedLine, "usage: /op #room name"),
        ("/op #lobby", errors.MalformedLine, "usage: /op #room name"),
        ("/op #lobby bob carol", errors.MalformedLine, "usage: /op #room name"),
        ("/deop #lobby", errors.MalformedLine, "usage: /deop #room name"),
        ("/kick", errors.MalformedLine, "usage: /kick #room name [reason]"),
        ("/kick #lobby", errors.MalformedLine, "usage: /kick #room name [reason]"),
        ("/ban", errors.MalformedLine, "usage: /ban #room name"),
        ("/ban #lobby bob now", errors.MalformedLine, "usage: /ban #room name"),
        ("/unban #lobby", errors.MalformedLine, "usage: /unban #room name"),
        ("/bans", errors.MalformedLine, "usage: /bans #room"),
        ("/bans #a #b", errors.MalformedLine, "usage: /bans #room"),
        ("@bob:bell\x07", errors.ControlCharacters, "control characters are not allowed"),
        ("@bob:esc\x1b[2J", errors.ControlCharacters, "control characters"),
        ("#al\x00ice", errors.ControlCharacters, "control characters"),
        ("@bob:cr\rinside", errors.ControlCharacters, "control characters"),
        ("@bob:del\x7f", errors.ControlCharacters, "control characters"),
        ("@bob:c1\x9b", errors.ControlCharacters, "control characters"),
    ],
)
def test_parse_errors(line, error, reply):
    with pytest.raises(error) as raised:
        parse_line(line.encode())
    assert format_error(raised.value).startswith(reply)


@pytest.mark.parametrize(
    ("event", "line"),
    [
        (DirectMessage("alice", "hello there"), "<alice> hello there"),
        (RoomMessage("#lobby", "alice", "hi all"), "#lobby <alice> hi all"),
        (Joined("#lobby", "alice"), "* alice joined #lobby"),
        (Left("#lobby", "alice"), "* alice left #lobby"),
        (Left("#lobby", "alice", disconnected=True), "* alice left #lobby (disconnected)"),
        (
            Left("#lobby", "alice", reason="lunch: back at 2"),
            "* alice left #lobby: lunch: back at 2",
        ),
        (
            Left("#lobby", "alice", disconnected=True, reason="gone home"),
            "* alice left #lobby (disconnected: gone home)",
        ),
        (Renamed("alice", "alicia"), "* alice is now alicia"),
        (Registered("alice"), "* registered as alice"),
        (UserList(None, ("alice", "bob")), "* online (2): alice, bob"),
        (UserList("#lobby", ("alice",)), "* #lobby (1): alice"),
        (
            UserList("#lobby", ("alice", "bob", "carol"), ("bob",)),
            "* #lobby (3): alice, @bob, carol",
        ),
        (DirectMessage("alice", "waves", True), "<alice> * waves"),
        (RoomMessage("#lobby", "alice", "waves", True), "#lobby * alice waves"),
        (
            Replayed(0, RoomMessage("#lobby", "bob", "nods", True)),
            "[1970-01-01T00:00:00Z] #lobby * bob nods",
        ),
        (RoomTopic("#lobby", "release: friday"), "* topic of #lobby: release: friday"),
        (RoomTopic("#lobby", None), "* #lobby has no topic"),
        (Counts(2, 1, 3, 5), "* counts: users=2 unregistered=1 rooms=3 peak-users=5"),
        (TopicChanged("#lobby", "alice", "hi"), "* alice set the topic of #lobby: hi"),
        (TopicChanged("#lobby", "alice", None), "* alice cleared the topic of #lobby"),
        (OperatorChanged("#lobby", "bob", "alice", True), "* alice made bob an operator of #lobby"),
        (
            OperatorChanged("#lobby", "bob", "alice", False),
            "* alice took operator status in #lobby from bob",
        ),
        (Kicked("#lobby", "bob", "alice"), "* bob was kicked from #lobby by alice"),
        (Kicked("#lobby", "bob", "alice", "spam"), "* bob was kicked from #lobby by alice: spam"),
        (BanChanged("#lobby", "bob", "alice", True), "* alice banned bob from #lobby"),
        (BanChanged("#lobby", "bob", "alice", False), "* alice unbanned bob from #lobby"),
        (BanList("#lobby", ("bob", "carol")), "* bans of #lobby (2): bob, carol"),
        (BanList("#lobby", ()), "* bans of #lobby (0)"),
        (UserList(None, ()), "* online (0)"),
        (UserInfo("bob", "bobby", "Bob Smith"), "* bob: user bobby, real name Bob Smith"),
        (UserInfo("bob", "bob", "bob", "lunch"), "* bob: user bob, real name bob; away: lunch"),
        (IsAway("bob", "gone: fishing"), "* bob is away: gone: fishing"),
        (AwayChanged("lunch"), "* you are marked as away: lunch"),
        (AwayChanged(None), "* you are no longer marked as away"),
        (RoomList((("#dev", 1), ("#lobby", 3))), "* rooms (2): #dev 1, #lobby 3"),
        (RoomList(()), "* rooms (0)"),
        (Notice("bye"), "* bye"),
        (LoggedIn("alice", 0), "* logged in as alice"),
        (LoggedIn("alice", 1), "* logged in as alice; 1 waiting message follows"),
        (LoggedIn("alice", 3), "* logged in as alice; 3 waiting messages follow"),
        (
            AccountCreated("alice"),
            "* alice is now a registered account; log in with #alice <password>",
        ),
        (PasswordChanged(), "* password changed"),
        (StoredForLater("bob"), "* bob is offline; message stored for delivery at login"),
        (HistoryStart("#lobby", 0), "* history of #lobby: 0 messages follow"),
        (HistoryStart("#lobby", 1), "* history of #lobby: 1 message follows"),
        (
            Replayed(1_800_000_005.9, DirectMessage("bob", "hi")),
            "[2027-01-15T08:00:05Z] <bob> hi",
        ),
        (
            Replayed(0, RoomMessage("#lobby", "bob", "hi")),
            "[1970-01-01T00:00:00Z] #lobby <bob> hi",
        ),
    ],
)
def test_format(event, line):
    assert format_event(event) == line


def test_format_rejects_non_events():
    with pytest.raises(TypeError):
        format_event("not an event")  # type: ignore[arg-type]


def test_help_tells_the_password_forms_and_rule():
    text = "\n".join(HELP)
    assert '/password "old words" "new words"' in text
    assert "8 to 1024 characters, spaces allowed" in text


def test_help_shows_what_each_command_does_in_one_column():
    columns = set()
    for line in HELP:
        # A command (words one space apart), or nothing on a line that goes on, then 2+ spaces.
        found = re.fullmatch(r"((?:\S+ )*\S+)?( {2,})\S.*", line)
        assert found, line
        command, gap = found.groups()
        columns.add(len(command or "") + len(gap))
    assert len(columns) == 1, columns


def test_help_fits_an_80_column_terminal():
    assert max(len(f"* {line}") for line in HELP) <= 80


def test_every_error_has_its_line_wording():
    """No error falls back to its plain description on the line protocol."""
    from chatroute.frontends import syntax

    kinds = {
        value
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, errors.ChatError)
    } - {errors.ChatError}
    assert kinds <= set(syntax._ERRORS), kinds - set(syntax._ERRORS)


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (errors.OperatorRequired("#lobby"), "you are not an operator of #lobby"),
        (errors.NoSuchMember("#lobby", "bob"), "bob is not in #lobby"),
        (errors.AlreadyOperator("#lobby", "bob"), "bob is already an operator of #lobby"),
        (errors.NotOperator("#lobby", "bob"), "bob is not an operator of #lobby"),
        (errors.BannedFromRoom("#lobby"), "you are banned from #lobby"),
        (errors.AlreadyBanned("#lobby", "bob"), "bob is already banned from #lobby"),
        (errors.NotBanned("#lobby", "bob"), "bob is not banned from #lobby"),
        (errors.TopicTooLong(390), "topic too long (over 390 characters)"),
        (errors.ReasonTooLong(390), "reason too long (over 390 characters)"),
    ],
)
def test_room_error_wording(error, line):
    assert format_error(error) == line


def test_errors_are_data_with_plain_descriptions():
    error = errors.NicknameTaken("alice")
    assert error == errors.NicknameTaken("alice") and error.nick == "alice"
    assert str(error) == "nickname taken: alice"
    assert str(errors.NotRegistered()) == "no nickname yet", "no line syntax in the core's words"
    assert format_error(errors.NotRegistered()) == "register first with #yourname"
