"""
The chat page in a real browser (Debian's Chromium, driven by Playwright),
served by the real server's web listener, with people on TCP beside it.

Every wait is on a condition (Playwright's C{expect} and the TCP reader's
deadlines), never a fixed time.
"""

import re

import pytest

from .web import WebServerProcess

expect = pytest.importorskip("playwright.sync_api").expect

pytestmark = [pytest.mark.integration, pytest.mark.browser]

PASSWORD = "secret123"


def make_account(connect, nick):
    """Make C{nick} an account with L{PASSWORD} over TCP, and go offline."""
    owner = connect(nick)
    owner.register(nick)
    owner.send(f"/register {PASSWORD}")
    owner.expect(f"* {nick} is now a registered account; log in with #{nick} <password>")
    owner.send("/quit")
    owner.expect("* bye")


@pytest.fixture
def server(web_server: WebServerProcess) -> WebServerProcess:
    """TCP connections (C{connect}) go to the server that serves the page."""
    return web_server


def test_two_pages_and_a_tcp_user_talk_in_a_room_and_directly(open_page, connect, tmp_path):
    alice = open_page()
    bob = open_page()
    carol = connect("carol")
    alice.sign_in("alice")
    bob.sign_in("bob")
    carol.register("carol")

    alice.join("#lobby")
    bob.join("#lobby")
    carol.send("/join #lobby")
    carol.expect("* carol joined #lobby")
    carol.expect("* #lobby (3): @alice, bob, carol")
    expect(alice.page.locator("#conversation-detail")).to_have_text("3 here: @alice, bob, carol")

    alice.say("hi all, the page works")
    carol.expect("#lobby <alice> hi all, the page works")
    expect(bob.log("#lobby")).to_contain_text("alice hi all, the page works")
    carol.send("@#lobby:hello from nc")
    carol.expect("#lobby <carol> hello from nc")
    for page in (alice, bob):
        expect(page.log("#lobby")).to_contain_text("carol hello from nc")

    # A direct message from TCP: its conversation appears, unread, until opened.
    carol.send("@alice:psst, alice")
    expect(alice.conversation_button("carol")).to_have_accessible_name("carol 1 unread")
    alice.open("carol")
    expect(alice.log("carol")).to_contain_text("carol psst, alice")
    expect(alice.conversation_button("carol")).to_have_accessible_name("carol")
    # Typed in a direct conversation, text goes to that person, and shows there.
    alice.say("hello carol")
    carol.expect("<alice> hello carol")
    expect(alice.log("carol")).to_contain_text("alice hello carol")

    # Page to page: a direct message, and the room's unread count meanwhile.
    bob.page.get_by_label("Talk to").fill("alice")
    bob.page.get_by_label("Talk to").press("Enter")
    bob.say("bob here, by DM")
    expect(bob.log("alice")).to_contain_text("bob bob here, by DM")
    expect(alice.conversation_button("bob")).to_have_accessible_name("bob 1 unread")
    alice.open("bob")
    expect(alice.log("bob")).to_contain_text("bob bob here, by DM")
    carol.send("@#lobby:anyone seen the release notes?")
    expect(alice.conversation_button("#lobby")).to_have_accessible_name("#lobby 1 unread")
    alice.open("#lobby")
    expect(alice.log("#lobby")).to_contain_text("anyone seen the release notes?")
    alice.say("yes, they are in the docs")
    bob.open("#lobby")
    expect(bob.log("#lobby")).to_contain_text("yes, they are in the docs")
    bob.open("alice")
    bob.say("see you at the stand-up")
    expect(alice.conversation_button("bob")).to_have_accessible_name("bob 1 unread")
    alice.page.screenshot(path=tmp_path / "chat-page.png")


def test_login_to_an_account_with_its_password_gets_waiting_messages(open_page, connect):
    make_account(connect, "dave")
    carol = connect("carol")
    carol.register("carol")
    carol.send("@dave:while you were out")
    carol.expect("* dave is offline; message stored for delivery at login")

    page = open_page()
    page.sign_in("dave", PASSWORD)
    expect(page.log("Server")).to_contain_text("logged in as dave; 1 waiting message follows")
    expect(page.conversation_button("carol")).to_have_accessible_name("carol 1 unread")
    page.open("carol")
    expect(page.log("carol")).to_contain_text("carol while you were out")
    # The password is not left on the screen.
    expect(page.password).to_have_value("")


def test_a_wrong_password_is_an_error_on_the_page(open_page, connect):
    make_account(connect, "dave")

    page = open_page()
    page.nickname.fill("dave")
    page.password.fill("not-the-password")
    page.nickname.press("Enter")
    expect(page.alert).to_have_text(re.compile(r"^wrong nickname or password"))
    expect(page.status).to_have_text("Connected")


def test_history_is_shown_on_join(open_page, connect):
    carol = connect("carol")
    carol.register("carol")
    carol.join("#lobby")
    for text in ("first, before anyone came", "second, still alone"):
        carol.send(f"@#lobby:{text}")
        carol.expect(f"#lobby <carol> {text}")

    page = open_page()
    page.sign_in("alice")
    page.join("#lobby")
    entries = page.log("#lobby").locator(".entry.past")
    expect(entries).to_have_count(2)
    expect(entries.nth(0)).to_contain_text("carol first, before anyone came")
    expect(entries.nth(1)).to_contain_text("carol second, still alone")
    # The time of a message from the past is the server's, kept machine-readable.
    expect(entries.nth(0).locator("time")).to_have_attribute(
        "datetime", re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")
    )


def alice_on_the_page_and_carol_in_lobby(open_page, connect):
    """alice signed in on the page and carol on the line protocol, both in #lobby (alice first)."""
    alice = open_page()
    alice.sign_in("alice")
    alice.join("#lobby")
    carol = connect("carol")
    carol.register("carol")
    carol.send("/join #lobby")
    carol.expect("* carol joined #lobby")
    carol.expect("* #lobby (2): @alice, carol")
    return alice, carol


def test_actions_read_as_what_someone_does_in_rooms_and_directly(open_page, connect):
    alice, carol = alice_on_the_page_and_carol_in_lobby(open_page, connect)

    # In a room, both ways.
    carol.send("/me #lobby waves")
    carol.expect("#lobby * carol waves")
    lobby = alice.log("#lobby").locator(".entry.action")
    expect(lobby).to_have_count(1)
    expect(lobby.nth(0)).to_contain_text("* carol waves")
    alice.say("/me #lobby waves back")
    carol.expect("#lobby * alice waves back")
    expect(lobby).to_have_count(2)
    expect(lobby.nth(1)).to_contain_text("* alice waves back")

    # To one person, both ways: the sender's own action shows too (the server does not echo it).
    carol.send("/me alice nudges you")
    expect(alice.conversation_button("carol")).to_have_accessible_name("carol 1 unread")
    alice.open("carol")
    direct = alice.log("carol").locator(".entry.action")
    expect(direct).to_have_count(1)
    expect(direct.nth(0)).to_contain_text("* carol nudges you")
    alice.say("/me carol nudges back")
    carol.expect("<alice> * nudges back")
    expect(direct).to_have_count(2)
    expect(direct.nth(1)).to_contain_text("* alice nudges back")

    # From a room's history, as live.
    bob = open_page()
    bob.sign_in("bob")
    bob.join("#lobby")
    past = bob.log("#lobby").locator(".entry.past.action")
    expect(past).to_have_count(2)
    expect(past.nth(0)).to_contain_text("* carol waves")
    expect(past.nth(1)).to_contain_text("* alice waves back")
    alice.open("#lobby")
    for page in (alice, bob):
        expect(page.log("#lobby")).not_to_contain_text("carol * waves")


def test_errors_are_shown_in_an_alert(open_page):
    page = open_page()
    page.sign_in("alice")
    page.say("/join lobby")
    expect(page.alert).to_contain_text("invalid room name: 'lobby'")
    page.page.get_by_role("button", name="Dismiss the error").click()
    expect(page.alert).to_be_empty()

    page.page.get_by_label("Talk to").fill("nobody")
    page.page.get_by_label("Talk to").press("Enter")
    page.say("is anyone there?")
    expect(page.alert).to_have_text(re.compile(r"^no such user: nobody"))


def test_markup_from_others_is_shown_as_text(open_page, connect):
    page = open_page()
    page.sign_in("alice")
    page.join("#lobby")
    mallory = connect("mallory")
    mallory.register("mallory")
    mallory.send("/join #lobby")
    mallory.expect("* mallory joined #lobby")
    mallory.expect("* #lobby (2): @alice, mallory")
    mallory.send("@#lobby:<b>x</b>")
    mallory.send('@alice:<img src="/nothing" onerror="document.title=\'owned\'">')

    lobby = page.log("#lobby")
    expect(lobby.locator(".text", has_text="<b>x</b>")).to_have_count(1)
    expect(lobby.locator("b")).to_have_count(0)
    page.open("mallory")
    expect(page.log("mallory")).to_contain_text('<img src="/nothing"')
    expect(page.log("mallory").locator("img")).to_have_count(0)
    expect(page.page).not_to_have_title("owned")


def test_the_page_reconnects_after_a_server_restart(
    open_page, web_server, start_web_server, connect
):
    page = open_page()
    page.sign_in("alice")
    # A password of several words, as /register takes it: the rest of the line.
    page.say("/register correct horse battery staple")
    expect(page.log("Server")).to_contain_text("alice is now a registered account")
    page.join("#lobby")
    page.say("before the restart")
    expect(page.log("#lobby")).to_contain_text("alice before the restart")
    page.say("/me #lobby stretches")
    expect(page.log("#lobby").locator(".entry.action")).to_contain_text("* alice stretches")

    web_server.stop()
    expect(page.status).to_have_text(re.compile(r"^Disconnected — reconnecting in \d+ s…$"))
    start_web_server(web_port=web_server.web_port, port=web_server.port)

    # Back under the same name, logged in to the account with the password given before,
    # and in the same room again.
    expect(page.status).to_have_text("Connected as alice", timeout=30_000)
    bob = connect("bob")
    bob.register("bob")
    bob.send("/join #lobby")
    bob.expect("* bob joined #lobby")
    bob.expect("* #lobby (2): @alice, bob")
    bob.expect("* history of #lobby: 2 messages follow")
    bob.expect_match(r"\[[-0-9T:]+Z\] #lobby <alice> before the restart")
    bob.expect_match(r"\[[-0-9T:]+Z\] #lobby \* alice stretches")
    bob.send("/who")
    bob.expect("* online (2): alice, bob")
    bob.send("@#lobby:welcome back")
    bob.expect("#lobby <bob> welcome back")
    expect(page.log("#lobby")).to_contain_text("bob welcome back")
    # What was seen before the restart is not shown twice from the room's history.
    expect(page.log("#lobby").get_by_text("before the restart")).to_have_count(1)
    expect(page.log("#lobby").locator(".entry.action")).to_have_count(1)
    page.say("thanks")
    bob.expect("#lobby <alice> thanks")


@pytest.mark.server_options("--flood-rate", "2", "--flood-burst", "4")
def test_lines_are_paced_to_the_flood_limit(open_page, connect):
    carol = connect("carol")
    carol.register("carol")
    carol.join("#slow")
    page = open_page()
    page.sign_in("alice")
    page.join("#slow")
    carol.expect("* alice joined #slow")

    # Twice the burst, typed faster than the server takes them: each arrives, in order,
    # and none is refused.
    for number in range(1, 9):
        page.say(f"line {number}")
    for number in range(1, 9):
        carol.expect(f"#slow <alice> line {number}")
    expect(page.log("#slow").locator(".entry.message")).to_have_count(8)
    expect(page.alert).to_be_empty()
    # The answer to the page's own /limits is not shown.
    page.open("Server")
    expect(page.log("Server")).not_to_contain_text("limits:")


def test_keyboard_only_on_a_phone_sized_screen(open_page, tmp_path):
    page = open_page(width=375, height=720)
    expect(page.nickname).to_be_focused()
    page.page.keyboard.type("erin")
    page.page.keyboard.press("Enter")
    expect(page.status).to_have_text("Connected as erin")
    expect(page.message).to_be_focused()
    page.page.keyboard.type("/join #phones")
    page.page.keyboard.press("Enter")
    expect(page.title).to_have_text("#phones")
    page.page.keyboard.type("typed without a mouse")
    page.page.keyboard.press("Enter")
    log = page.log("#phones")
    expect(log).to_contain_text("erin typed without a mouse")
    expect(log).to_have_attribute("aria-live", "polite")

    # Leave the room with the keyboard: Tab from the message field reaches Send; Shift+Tab
    # back from the message field goes through the sidebar to the room's Leave button.
    page.page.keyboard.press("Tab")
    expect(page.page.get_by_role("button", name="Send")).to_be_focused()
    leave = page.page.get_by_role("button", name="Leave #phones")
    leave.focus()
    page.page.keyboard.press("Enter")
    expect(page.conversation_button("#phones")).to_have_count(0)

    # Nothing is wider than the screen.
    width = page.page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375
    for control in (page.nickname, page.password, page.message):
        box = control.bounding_box()
        assert box is not None
        assert box["x"] >= 0
        assert box["x"] + box["width"] <= 375
    page.page.screenshot(path=tmp_path / "phone.png")


@pytest.mark.server_options("--flood-burst", "100")
def test_the_newest_message_stays_in_view_with_an_error_shown(open_page, connect, tmp_path):
    carol = connect("carol")
    carol.register("carol")
    carol.join("#lobby")
    page = open_page(height=480)
    page.sign_in("alice")
    page.join("#lobby")
    carol.expect("* alice joined #lobby")
    for number in range(1, 31):
        carol.send(f"@#lobby:filler {number}")
    entries = page.log("#lobby").locator(".entry")
    expect(entries.last).to_contain_text("carol filler 30")
    expect(entries.last).to_be_in_viewport()

    # Refused (alice is not an operator): the banner takes room from the conversation, whose
    # newest message stays in view, as do those after it.
    page.say("/kick #lobby bob")
    expect(page.alert).not_to_be_empty()
    carol.send("@#lobby:after the error")
    expect(entries.last).to_contain_text("carol after the error")
    expect(entries.last).to_be_in_viewport()
    page.page.screenshot(path=tmp_path / "banner.png")
    page.page.get_by_role("button", name="Dismiss the error").click()
    carol.send("@#lobby:after closing it")
    expect(entries.last).to_contain_text("carol after closing it")
    expect(entries.last).to_be_in_viewport()

    # Scrolled up to read, the conversation stays where it was.
    page.log("#lobby").evaluate("log => { log.scrollTop = 0; }")
    expect(entries.first).to_be_in_viewport()
    carol.send("@#lobby:while reading back")
    expect(entries.last).to_contain_text("carol while reading back")
    expect(entries.first).to_be_in_viewport()
    expect(entries.last).not_to_be_in_viewport()


def test_an_error_from_before_a_reconnect_is_cleared(
    open_page, web_server, start_web_server, connect
):
    carol = connect("carol")
    carol.register("carol")
    carol.join("#lobby")
    carol.send("/ban #lobby alice")
    carol.expect("* carol banned alice from #lobby")
    page = open_page()
    page.sign_in("alice")
    page.join("#other")
    page.say("/join #lobby")
    expect(page.alert).to_have_text(re.compile(r"^you are banned from #lobby"))

    web_server.stop()
    expect(page.status).to_have_text(re.compile(r"^Disconnected"))
    start_web_server(web_port=web_server.web_port, port=web_server.port)
    expect(page.status).to_have_text("Connected as alice", timeout=30_000)
    expect(page.log("#other").get_by_text("alice joined #other")).to_have_count(2)
    expect(page.alert).to_be_empty()


def test_the_reconnect_status_counts_down(open_page, web_server):
    page = open_page()
    page.sign_in("alice")
    page.page.evaluate(
        """() => {
          const status = document.getElementById("status");
          window.statusSeen = [];
          new MutationObserver(() => window.statusSeen.push(status.textContent)).observe(
            status, { childList: true, characterData: true, subtree: true });
        }"""
    )
    web_server.stop()
    # One wait (of 2 s or more) shown second by second: "in 2 s…", then "in 1 s…".
    page.page.wait_for_function(
        """() => window.statusSeen.some((text, index) => {
          const now = /reconnecting in (\\d+) s…$/.exec(text);
          const next = /reconnecting in (\\d+) s…$/.exec(window.statusSeen[index + 1] ?? "");
          return now !== null && next !== null && Number(next[1]) === Number(now[1]) - 1;
        })""",
        timeout=20_000,
    )


def test_me_alone_acts_in_the_conversation_on_screen(open_page, connect):
    alice, carol = alice_on_the_page_and_carol_in_lobby(open_page, connect)

    alice.say("/me nods")
    carol.expect("#lobby * alice nods")
    lobby = alice.log("#lobby").locator(".entry.action")
    expect(lobby).to_have_count(1)
    expect(lobby.nth(0)).to_contain_text("* alice nods")

    alice.page.get_by_label("Talk to").fill("carol")
    alice.page.get_by_label("Talk to").press("Enter")
    alice.say("/me waves at you")
    carol.expect("<alice> * waves at you")
    direct = alice.log("carol").locator(".entry.action")
    expect(direct).to_have_count(1)
    expect(direct.nth(0)).to_contain_text("* alice waves at you")

    # Naming a room or someone still acts there, from any conversation.
    alice.say("/me #lobby points at the board")
    carol.expect("#lobby * alice points at the board")
    alice.open("#lobby")
    alice.say("/me carol hands you a note")
    carol.expect("<alice> * hands you a note")
    alice.open("carol")
    expect(direct).to_have_count(2)
    expect(direct.nth(1)).to_contain_text("* alice hands you a note")
    expect(alice.alert).to_be_empty()


def test_a_password_in_a_command_shows_as_one_mask(open_page):
    page = open_page()
    page.sign_in("alice")
    server = page.log("Server")
    commands = server.locator(".entry.command .text")
    page.say("/register correct horse battery staple")
    expect(server).to_contain_text("alice is now a registered account")
    expect(commands.last).to_have_text("/register ********")
    page.say('/password "correct horse battery staple" "new words here"')
    expect(server).to_contain_text("password changed")
    expect(commands.last).to_have_text("/password ********")
    page.say("/login alice new words here")
    expect(commands.last).to_have_text("/login alice ********")
    page.say("/pass the server's own words")
    expect(server).to_contain_text("this server has no password")
    expect(commands.last).to_have_text("/pass ********")
    for secret in ("horse", "words", "server's"):
        expect(page.page.locator("body")).not_to_contain_text(secret)


def test_help_is_a_monospace_block_under_a_note_on_the_page(open_page, tmp_path):
    page = open_page()
    page.sign_in("alice")
    page.say("/help")
    server = page.log("Server")
    block = server.locator(".entry.help")
    expect(block).to_have_count(1)
    expect(block).to_contain_text("what you type goes to the conversation on screen")
    table = block.locator("pre")
    expect(table).to_contain_text("/join #room")
    expect(table).to_contain_text("(rooms are told the reason)")
    assert "monospace" in table.evaluate("pre => getComputedStyle(pre).fontFamily")
    # Each line of the server's answer is in the block, none left as a notice of its own.
    expect(server.locator(".entry.notice", has_text="/join #room")).to_have_count(0)
    # What comes next is a notice again.
    page.say("/who")
    expect(server.locator(".entry.notice", has_text="online (1): alice")).to_have_count(1)
    expect(table).not_to_contain_text("online (1)")
    block.evaluate("block => block.scrollIntoView()")
    page.page.screenshot(path=tmp_path / "help.png")


def test_a_rooms_heading_shows_its_topic_and_marks_operators_and_voices(
    open_page, connect, tmp_path
):
    carol = connect("carol")
    carol.register("carol")
    carol.join("#lobby")
    carol.send("/topic #lobby plans for <b>friday</b>")
    carol.expect("* carol set the topic of #lobby: plans for <b>friday</b>")
    bob = connect("bob")
    bob.register("bob")
    bob.join("#lobby", carol)
    carol.send("/voice #lobby bob")
    carol.expect("* carol gave bob a voice in #lobby")

    page = open_page()
    page.sign_in("alice")
    page.join("#lobby")
    detail = page.page.locator("#conversation-detail")
    topic = page.page.locator("#conversation-topic")
    expect(detail).to_have_text("3 here: alice, +bob, @carol")
    expect(topic).to_have_text("plans for <b>friday</b>")
    expect(topic.locator("b")).to_have_count(0)

    carol.send("/op #lobby alice")
    expect(detail).to_have_text("3 here: @alice, +bob, @carol")
    carol.send("/devoice #lobby bob")
    expect(detail).to_have_text("3 here: @alice, bob, @carol")
    bob.send("#robert")
    expect(detail).to_have_text("3 here: @alice, @carol, robert")
    carol.send("/topic #lobby -")
    expect(topic).to_be_hidden()
    page.say("/topic #lobby the new plans")
    expect(topic).to_have_text("the new plans")
    page.page.screenshot(path=tmp_path / "heading.png")
    page.open("Server")
    expect(topic).to_be_hidden()
