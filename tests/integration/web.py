"""
Helpers for the browser tests of the chat page: the server with a web listener,
Debian's Chromium driven by Playwright, and one person's view of the page.

Playwright is imported only by the fixtures that need it, so the rest of the
integration tests run without it.
"""

import re
from pathlib import Path
from typing import Any

from .support import WEB_STARTED, ServerProcess

CHROMIUM = Path("/usr/bin/chromium")
# The machine's network is closed: nothing in the background may try to reach it.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


class WebServerProcess(ServerProcess):
    """
    The server with one web listener on loopback, beside its TCP listener.

    @ivar web_port: the web listener's port.
    @ivar url: the chat page's address.
    """

    def __init__(self, directory: Path, *options: str, web_port: int = 0, **kwargs: Any) -> None:
        """
        @param web_port: the web listener's port; by default one the system chooses.
        @param kwargs: as for L{ServerProcess}.
        """
        listener = f"tcp:{web_port}:interface=127.0.0.1"
        super().__init__(directory, "--listen-web", listener, *options, **kwargs)
        self.web_port = int(self.wait_for_log(WEB_STARTED)[0].group(1))
        self.url = f"http://127.0.0.1:{self.web_port}/"


class ChatPage:
    """One person at the chat page, doing what they would do with the keyboard."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.nickname = page.get_by_label("Nickname")
        self.password = page.get_by_label("Password")
        self.message = page.get_by_label("Message")
        self.status = page.get_by_role("status")
        self.alert = page.get_by_role("alert")
        self.title = page.locator("#conversation-title")

    def sign_in(self, nick: str, password: str | None = None) -> None:
        """Type the nickname (and password), press Enter, and wait to be connected."""
        from playwright.sync_api import expect

        self.nickname.fill(nick)
        if password is not None:
            self.password.fill(password)
        self.nickname.press("Enter")
        expect(self.status).to_have_text(f"Connected as {nick}")

    def join(self, room: str) -> None:
        """Join C{room} with the sidebar's form, and wait for its conversation to show."""
        from playwright.sync_api import expect

        field = self.page.get_by_label("Room", exact=True)
        field.fill(room)
        field.press("Enter")
        expect(self.title).to_have_text(room)

    def say(self, text: str) -> None:
        """Type C{text} in the message field and press Enter."""
        self.message.fill(text)
        self.message.press("Enter")

    def log(self, name: str) -> Any:
        """The conversation with C{name} ("Server", "#lobby", a nickname)."""
        return self.page.get_by_role("log", name=name, exact=True)

    def conversation_button(self, name: str) -> Any:
        """The sidebar's button showing the conversation with C{name}, and its unread count."""
        return self.page.get_by_role("navigation").get_by_role(
            "button", name=re.compile(rf"^{re.escape(name)}( \d+ unread)?$")
        )

    def open(self, name: str) -> None:
        """Show the conversation with C{name} by its button in the sidebar."""
        self.conversation_button(name).click()
