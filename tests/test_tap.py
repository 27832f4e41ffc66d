"""The twistd plugin's options and the services they build."""

import socket

import pytest
import pytest_twisted
from twisted.application.service import IServiceMaker
from twisted.internet import reactor
from twisted.plugin import getPlugins
from twisted.python.usage import UsageError

from chatroute.core.limits import Limits
from chatroute.core.router import RouterSettings
from chatroute.tap import DEFAULT_PORT, Options, makeService
from tests.conftest import Person


def parse(*argv: str) -> Options:
    options = Options()
    options.parseOptions(list(argv))
    return options


def test_plugin_is_found_by_twistd():
    makers = {maker.tapname: maker for maker in getPlugins(IServiceMaker)}
    assert makers["chatroute"].options is Options


def test_defaults():
    options = parse()
    assert options["listen"] == [f"tcp:{DEFAULT_PORT}"]
    assert options["max-line-length"] == 4096
    assert options["db"] == "chatroute.db"
    assert options.router_settings() == RouterSettings()


def test_port_listens_on_all_interfaces():
    assert parse("--port", "4000")["listen"] == ["tcp:4000"]


def test_listen_is_repeatable_and_combines_with_port():
    options = parse(
        "--listen", "tcp:1:interface=127.0.0.1", "--listen", "tcp6:2:interface=\\:\\:1", "-p", "3"
    )
    assert options["listen"] == ["tcp:1:interface=127.0.0.1", "tcp6:2:interface=\\:\\:1", "tcp:3"]


@pytest.mark.parametrize(
    "argv",
    [
        ["--port", "http"],
        ["--port", "70000"],
        ["--listen", "nonsense:1"],
        ["--listen", "tcp:notaport"],
        ["--max-line-length", "0"],
        ["--max-line-length", "many"],
        ["--unknown"],
        ["--offline-cap", "-1"],
        ["--history", "lots"],
        ["--flood-rate", "-1"],
        ["--flood-rate", "nan"],
        ["--idle-timeout", "inf"],
        ["--flood-burst", "0"],
        ["--max-send-buffer", "-5"],
    ],
)
def test_bad_options(argv):
    with pytest.raises(UsageError):
        parse(*argv)


@pytest_twisted.ensureDeferred
async def test_service_listens_on_every_endpoint_with_one_chat(tmp_path):
    database = tmp_path / "chat.db"
    options = parse(
        "--listen", "tcp:0:interface=127.0.0.1", "--listen", "tcp:0:interface=127.0.0.1",
        "--db", str(database), "--max-line-length", "99", "--history", "5",
    )  # fmt: skip
    service = makeService(options, reactor)
    assert database.exists(), "created before the reactor runs"
    service.privilegedStartService()
    service.startService()
    try:
        ports = [await listener._waitingForPort for listener in service]
        assert len(ports) == 2
        assert len({port.factory for port in ports}) == 1
        assert ports[0].factory.hub is service.hub
        assert service.hub.max_line_length == 99
        assert service.hub.router.settings.join_history == 5
    finally:
        await service.stopService()
    assert all(not port.connected for port in ports)


def test_a_port_that_cannot_be_had_stops_start_up_with_a_message():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        service = makeService(parse("--db", ":memory:", "--port", "0", "--listen", f"tcp:{port}"))
        with pytest.raises(SystemExit, match=rf"cannot listen on tcp:{port}: .*in use"):
            service.privilegedStartService()


@pytest_twisted.ensureDeferred
async def test_stopping_tells_everyone_and_closes_the_storage():
    service = makeService(parse("--db", ":memory:", "--listen", "tcp:0:interface=127.0.0.1"))
    service.privilegedStartService()
    service.startService()
    person = Person(service.hub.router)
    await service.stopService()
    assert person.participant.closed == "the server is shutting down"


def test_unusable_database_stops_start_up_with_a_message(tmp_path):
    (tmp_path / "not.db").write_text("not a database")
    with pytest.raises(SystemExit, match=r"cannot use database .*not\.db"):
        makeService(parse("--db", str(tmp_path / "not.db")))


def test_limits_from_options():
    assert parse().limits() == Limits()
    limits = parse(
        "--flood-rate", "0.5", "--flood-burst", "4", "--max-per-address", "0",
        "--max-connections", "7", "--register-timeout", "0", "--idle-timeout", "30",
        "--max-send-buffer", "65536",
    ).limits()  # fmt: skip
    assert limits == Limits(0.5, 4, 0, 7, 0, 30, 65536)


def test_tls_for_login_flag():
    assert not parse()["require-tls-for-login"]
    service = makeService(parse("--db", ":memory:", "--require-tls-for-login"))
    assert service.hub.require_tls_for_login


def test_router_settings_from_options():
    settings = parse(
        "--require-account", "--offline-cap", "7", "--history", "0", "--max-history", "9"
    ).router_settings()
    assert settings == RouterSettings(
        require_account=True, offline_cap=7, join_history=0, max_history=9
    )
