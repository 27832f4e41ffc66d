"""
Fixtures for the integration tests: the real C{twistd chatroute} server, raw
loopback connections to it, real C{chatroute-client} processes, and pages in
a real browser, all cleaned up after each test.
"""

import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .support import ChatConnection, ClientProcess, ServerProcess
from .web import (
    CHROMIUM,
    CHROMIUM_ARGS,
    ChatPage,
    WebServerProcess,
)


def _check_stopped(running: ServerProcess) -> None:
    """Stop the server; fail unless it exited cleanly without logging a traceback."""
    status = running.stop()
    log = running.log()
    assert status in (0, -signal.SIGTERM), f"twistd exited with {status}; its log:\n{log}"
    assert "Traceback" not in log, f"the server logged an error:\n{log}"


@pytest.fixture
def server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    """
    A real C{twistd chatroute} listening on 127.0.0.1, stopped after the test.

    It runs with the default limits, plus the options of a
    C{@pytest.mark.server_options(...)} marker. Teardown fails the test if
    the server logged a traceback.
    """
    directory = tmp_path / "server"
    directory.mkdir()
    marker = request.node.get_closest_marker("server_options")
    running = ServerProcess(directory, *(marker.args if marker else ()))
    try:
        yield running
    finally:
        _check_stopped(running)


@pytest.fixture
def connect(server: ServerProcess) -> Iterator[Callable[..., ChatConnection]]:
    """
    Open raw connections to the server: C{connect(name, newline="\\n")}.

    Each has read its greeting; all are closed after the test.
    """
    opened: list[ChatConnection] = []

    def open_connection(name: str = "client", newline: str = "\n") -> ChatConnection:
        connection = ChatConnection(server.port, name, newline)
        opened.append(connection)
        return connection

    yield open_connection
    for connection in opened:
        connection.close()


@pytest.fixture
def spawn_client(tmp_path: Path) -> Iterator[Callable[..., ClientProcess]]:
    """
    Start real clients with any arguments: C{spawn_client(name, *args)}.

    Any still running after the test is killed.
    """
    started: list[ClientProcess] = []

    def spawn(name: str, *args: str) -> ClientProcess:
        client = ClientProcess(list(args), tmp_path, name)
        started.append(client)
        return client

    yield spawn
    for client in started:
        client.kill()


@pytest.fixture
def start_client(
    server: ServerProcess, spawn_client: Callable[..., ClientProcess]
) -> Callable[..., ClientProcess]:
    """
    Start real clients of the server: C{start_client(name, *extra_args)}.

    Each runs C{chatroute-client --host 127.0.0.1 --port PORT *extra_args}.
    """

    def start(name: str, *args: str) -> ClientProcess:
        return spawn_client(name, "--host", "127.0.0.1", "--port", str(server.port), *args)

    return start


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """
    Debian's Chromium, headless, driven by Playwright; one for a test module.

    Skips where Playwright or Chromium is missing or Chromium cannot start
    (C{scripts/setup-test-packages} installs it where it can).
    """
    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (scripts/setup-test-packages installs it as root)")
    with sync_api.sync_playwright() as playwright:
        try:
            launched = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
            )
        except sync_api.Error as error:
            pytest.skip(f"Chromium at {CHROMIUM} did not start: {error.message}")
        # Generous, as the other waits here; conditions are waited on, never a fixed time.
        sync_api.expect.set_options(timeout=10_000)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def start_web_server(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., WebServerProcess]]:
    """
    Start the server with a web listener: C{start_web_server(web_port=0, port=0)}.

    Every server started by one test shares a directory, so its database, as
    a restarted server would. They run with the options of a
    C{@pytest.mark.server_options(...)} marker, and are stopped and checked
    as the L{server} fixture's is.
    """
    directory = tmp_path / "server"
    directory.mkdir()
    marker = request.node.get_closest_marker("server_options")
    started: list[WebServerProcess] = []

    def start(web_port: int = 0, port: int = 0) -> WebServerProcess:
        running = WebServerProcess(
            directory,
            *(marker.args if marker else ()),
            web_port=web_port,
            port=port,
            log_name=f"twistd-{len(started) + 1}.log",
        )
        started.append(running)
        return running

    try:
        yield start
    finally:
        for running in started:
            _check_stopped(running)


@pytest.fixture
def web_server(start_web_server: Callable[..., WebServerProcess]) -> WebServerProcess:
    """The server with a web listener on 127.0.0.1, beside its TCP one."""
    return start_web_server()


@pytest.fixture
def open_page(browser: Any, web_server: WebServerProcess) -> Iterator[Callable[..., ChatPage]]:
    """
    Open the chat page in a fresh browser context: C{open_page(width=1280, height=720)}.

    Each page is its own person (no shared storage). A script error on any
    page fails the test.
    """
    contexts: list[Any] = []
    errors: list[str] = []

    def open_one(width: int = 1280, height: int = 720) -> ChatPage:
        context = browser.new_context(viewport={"width": width, "height": height})
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(web_server.url)
        return ChatPage(page)

    yield open_one
    for context in contexts:
        context.close()
    assert not errors, f"the page had script errors: {errors}"
