"""
Fixtures for the integration tests: the real C{twistd chatroute} server, raw
loopback connections to it, and real C{chatroute-client} processes, all
cleaned up after each test.
"""

import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .support import ChatConnection, ClientProcess, ServerProcess


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
        status = running.stop()
    log = running.log()
    assert status in (0, -signal.SIGTERM), f"twistd exited with {status}; its log:\n{log}"
    assert "Traceback" not in log, f"the server logged an error:\n{log}"


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
