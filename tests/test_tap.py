"""The twistd plugin's options and the services they build."""

import socket
from importlib import metadata

import pytest
import pytest_twisted
from twisted.application.service import IServiceMaker
from twisted.internet import reactor
from twisted.plugin import getPlugins
from twisted.python.usage import UsageError

from chatroute import certs
from chatroute.backplane.connection import RedisAddress
from chatroute.backplane.redis import RedisBackplane
from chatroute.core.limits import Limits
from chatroute.core.router import RouterSettings
from chatroute.frontends.irc import IRCServerFactory
from chatroute.metrics import MetricsSite, TimedBackplane, TimedStorage
from chatroute.reuseport import ReusePortEndpoint
from chatroute.tap import DEFAULT_BACKLOG, DEFAULT_PORT, Options, makeService, with_backlog
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
        ["--listen", "nonsense:1"],
        ["--listen", "tcp:notaport"],
        ["--unknown"],
    ],
)
def test_bad_options(argv):
    with pytest.raises(UsageError):
        parse(*argv)


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["--port", "abc"], "--port: expected a TCP port number 0-65535, got 'abc'"),
        (["-p", "70000"], "--port: expected a TCP port number 0-65535, got '70000'"),
        (["--port", "-1"], "--port: expected a TCP port number 0-65535, got '-1'"),
        (
            ["--max-line-length", "0"],
            "--max-line-length: expected a whole number, 1 or more, got '0'",
        ),
        (
            ["--max-line-length", "many"],
            "--max-line-length: expected a whole number, 1 or more, got 'many'",
        ),
        (["--offline-cap", "-1"], "--offline-cap: expected a whole number, 0 or more, got '-1'"),
        (["--history", "lots"], "--history: expected a whole number, 0 or more, got 'lots'"),
        (["--max-history", "1.5"], "--max-history: expected a whole number, 0 or more, got '1.5'"),
        (["--flood-burst", "0"], "--flood-burst: expected a whole number, 1 or more, got '0'"),
        (
            ["--max-per-address", "x"],
            "--max-per-address: expected a whole number, 0 or more, got 'x'",
        ),
        (
            ["--max-connections", "1e4"],
            "--max-connections: expected a whole number, 0 or more, got '1e4'",
        ),
        (
            ["--max-send-buffer", "-5"],
            "--max-send-buffer: expected a whole number, 0 or more, got '-5'",
        ),
        (["--backlog", "0"], "--backlog: expected a whole number, 1 or more, got '0'"),
        (
            ["--flood-rate", "nan"],
            "--flood-rate: expected a number of lines a second, 0 or more, got 'nan'",
        ),
        (
            ["--flood-rate", "-1"],
            "--flood-rate: expected a number of lines a second, 0 or more, got '-1'",
        ),
        (
            ["--register-timeout", "soon"],
            "--register-timeout: expected a number of seconds, 0 or more, got 'soon'",
        ),
        (
            ["--idle-timeout", "inf"],
            "--idle-timeout: expected a number of seconds, 0 or more, got 'inf'",
        ),
    ],
)
def test_option_errors_name_the_option_and_what_it_wants(argv, error):
    with pytest.raises(UsageError) as raised:
        parse(*argv)
    assert str(raised.value) == error


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help(flag, capsys):
    with pytest.raises(SystemExit) as exited:
        parse(flag)
    assert exited.value.code == 0
    assert "Run the chatroute chat server." in capsys.readouterr().out


def test_version(capsys):
    with pytest.raises(SystemExit) as exited:
        parse("--version")
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"twistd chatroute {metadata.version('chatroute')}\n"


def backlogs(*argv: str) -> list[int]:
    """The listen backlog of each endpoint the options build, in order."""
    service = makeService(parse("--db", ":memory:", *argv), reactor)
    return [listener.endpoint._backlog for listener in service]


def test_backlog_default_applies_to_port_and_listen():
    assert DEFAULT_BACKLOG == 4096
    assert backlogs("--port", "0", "--listen", "tcp6:0:interface=\\:\\:1") == [4096, 4096]


def test_backlog_option(tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    certs.main(["--key", str(key), "--cert", str(cert)])
    tls = certs.listen_description(key, cert, 0)
    argv = ["--backlog", "2000", "-p", "0", "--listen", "tcp:0", "--listen", tls]
    assert backlogs(*argv) == [2000, 2000, 2000]


def test_an_endpoint_with_its_own_backlog_keeps_it():
    argv = ["--backlog", "99", "--listen", "tcp:0:backlog=7", "--listen", "tcp6:0:backlog=8"]
    assert backlogs(*argv) == [7, 8]


@pytest.mark.parametrize("description", ["unix:/tmp/chat.sock", "tcpx:1"])
def test_other_endpoints_are_left_alone(description):
    assert with_backlog(description, 99) == description


def test_a_backlog_given_by_position_is_kept():
    argv = ["--backlog", "99", "--listen", "tcp:0:127.0.0.1:7", "--listen", "tcp6:0:8:\\:\\:1"]
    assert backlogs(*argv) == [7, 8]


@pytest.mark.parametrize(
    ("description", "result"),
    [
        ("tcp:1", "tcp:1:backlog=9"),
        ("tcp:1:interface=127.0.0.1", "tcp:1:interface=127.0.0.1:backlog=9"),
        ("tcp6:1:interface=\\:\\:1", "tcp6:1:interface=\\:\\:1:backlog=9"),
        ("ssl:1:privateKey=a\\:backlog=1.pem", "ssl:1:privateKey=a\\:backlog=1.pem:backlog=9"),
        ("tcp:1:backlog=3", "tcp:1:backlog=3"),
        ("tcp:port=1:backlog=3", "tcp:port=1:backlog=3"),
    ],
)
def test_with_backlog(description, result):
    assert with_backlog(description, 9) == result


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
    with pytest.raises(SystemExit, match=r"cannot use --db .*not\.db"):
        makeService(parse("--db", str(tmp_path / "not.db")))


@pytest_twisted.ensureDeferred
async def test_a_postgresql_url_selects_postgresql(postgres_url):
    from chatroute.storage.postgres import PostgresStorage

    service = makeService(parse("--db", postgres_url, "--listen", "tcp:0:interface=127.0.0.1"))
    assert isinstance(service._storage, PostgresStorage)
    service.privilegedStartService()
    service.startService()
    await service.stopService()


def test_a_file_name_selects_sqlite(tmp_path):
    from chatroute.storage.sqlite import SQLiteStorage

    service = makeService(parse("--db", str(tmp_path / "postgresql.db")))
    assert isinstance(service._storage, SQLiteStorage)
    service._storage.close()


def test_unreachable_postgresql_stops_start_up_without_showing_the_password():
    pytest.importorskip("psycopg")
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(SystemExit) as exited:
        makeService(parse("--db", f"postgresql://chat:s3cret@127.0.0.1:{port}/chat"))
    message = str(exited.value)
    assert message.startswith(
        f"chatroute: cannot use --db postgresql://chat:***@127.0.0.1:{port}/chat"
    )
    assert "Connection refused" in message
    assert "s3cret" not in message


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


def test_server_password_file(tmp_path):
    assert parse()["server-password"] is None
    (tmp_path / "password").write_text("  open sesame \nignored\n")
    options = parse("--db", ":memory:", "--server-password-file", str(tmp_path / "password"))
    assert options["server-password"] == "open sesame"
    assert makeService(options).hub.server_password == "open sesame"


@pytest.mark.parametrize(("content", "error"), [(None, "cannot read"), ("\n", "is blank")])
def test_a_server_password_file_must_hold_one(tmp_path, content, error):
    path = tmp_path / "password"
    if content is not None:
        path.write_text(content)
    with pytest.raises(UsageError, match=f"--server-password-file: .*{error}"):
        parse("--server-password-file", str(path))


def test_router_settings_from_options():
    settings = parse(
        "--require-account", "--offline-cap", "7", "--history", "0", "--max-history", "9"
    ).router_settings()
    assert settings == RouterSettings(
        require_account=True, offline_cap=7, join_history=0, max_history=9
    )


@pytest.mark.parametrize("option", ["--listen", "--listen-web", "--listen-metrics"])
def test_a_bad_endpoint_names_its_option_and_what_it_wants(option):
    with pytest.raises(UsageError) as raised:
        parse(option, "tcp:abc")
    assert str(raised.value).startswith(
        f"{option}: expected a Twisted endpoint such as tcp:12345:interface=127.0.0.1, "
        "got 'tcp:abc'"
    )


def test_listen_irc_is_repeatable_with_the_backlog_and_a_server_name():
    options = parse(
        "--db", ":memory:", "--listen-irc", "tcp:6667", "--listen-irc", "tcp:6668",
        "--irc-server-name", "irc.example.org",
    )  # fmt: skip
    assert options["listen-irc"] == ["tcp:6667", "tcp:6668"]
    service = makeService(options, reactor)
    listeners = list(service)
    irc = [listener for listener in listeners if isinstance(listener.factory, IRCServerFactory)]
    assert [listener.description for listener in irc] == ["tcp:6667", "tcp:6668"]
    assert all(listener.endpoint._backlog == DEFAULT_BACKLOG for listener in irc)
    assert irc[0].factory.hub is service.hub
    assert irc[0].factory.server == "irc.example.org"


def test_listen_irc_wants_an_endpoint():
    with pytest.raises(UsageError, match="--listen-irc: expected a Twisted endpoint"):
        parse("--listen-irc", "nonsense:1")


def test_no_redis_means_no_backplane(tmp_path):
    service = makeService(parse("--db", ":memory:"), reactor)
    assert not [child for child in service if isinstance(child, RedisBackplane)]
    assert service.hub.router._backplane is None


def test_redis_option_adds_the_backplane_and_its_directory():
    options = parse("--db", ":memory:", "--redis", "redis://127.0.0.1:7000/2")
    assert options["redis-address"] == RedisAddress("127.0.0.1", 7000, 2)
    service = makeService(options, reactor)
    (backplane,) = [child for child in service if isinstance(child, RedisBackplane)]
    assert service.hub.router._directory is backplane.directory


@pytest.mark.parametrize("url", ["localhost:6379", "redis://h:port", "http://h"])
def test_a_bad_redis_url_names_the_option(url):
    with pytest.raises(UsageError, match="--redis: expected redis://host:port/N"):
        parse("--redis", url)


def test_no_reuse_port_by_default():
    service = makeService(parse("--db", ":memory:", "--port", "0"), reactor)
    assert not any(isinstance(listener.endpoint, ReusePortEndpoint) for listener in service)


def test_reuse_port_applies_to_every_listener_with_its_backlog(tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    certs.main(["--key", str(key), "--cert", str(cert)])
    options = parse(
        "--db", ":memory:", "--reuse-port", "--backlog", "77", "--port", "0",
        "--listen", certs.listen_description(key, cert, 0), "--listen-irc", "tcp:0",
        "--listen-web", "tcp6:0:interface=\\:\\:1",
    )  # fmt: skip
    endpoints = [listener.endpoint for listener in makeService(options, reactor)]
    assert all(isinstance(endpoint, ReusePortEndpoint) for endpoint in endpoints)
    assert [endpoint._backlog for endpoint in endpoints] == [77, 77, 77, 77]
    assert [endpoint.tls is not None for endpoint in endpoints] == [True, False, False, False]


@pytest.mark.parametrize("option", ["--listen", "--listen-web", "--listen-irc"])
def test_reuse_port_refuses_an_endpoint_it_cannot_share(option, tmp_path):
    where = tmp_path / "chat.sock"
    with pytest.raises(UsageError) as raised:
        parse("--reuse-port", option, f"unix:{where}")
    assert str(raised.value) == (
        f"--reuse-port: it applies to tcp, tcp6, ssl endpoints only, not to {option} unix:{where}"
    )


@pytest.mark.parametrize("kind", ["unix", "tcp"])
def test_reuse_port_leaves_the_metrics_listener_alone(kind, tmp_path):
    """Each node's metrics are its own: --listen-metrics of any type is taken, never shared."""
    metrics = f"unix:{tmp_path / 'm.sock'}" if kind == "unix" else "tcp:0:interface=127.0.0.1"
    options = parse("--db", ":memory:", "--reuse-port", "--port", "0", "--listen-metrics", metrics)
    assert options["listen-metrics"] == [metrics]
    listeners = list(makeService(options, reactor))
    shared = [
        listener.description
        for listener in listeners
        if isinstance(listener.endpoint, ReusePortEndpoint)
    ]
    assert shared == ["tcp:0"]
    assert [
        listener.description for listener in listeners if isinstance(listener.factory, MetricsSite)
    ] == [metrics]


@pytest.mark.parametrize("existed", [False, True])
def test_a_start_that_cannot_listen_leaves_no_database_it_created(tmp_path, existed):
    database = tmp_path / "chat.db"
    if existed:
        makeService(parse("--db", str(database), "--port", "0"), reactor)
        kept = database.read_bytes()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        listen = f"tcp:{taken.getsockname()[1]}:interface=127.0.0.1"
        service = makeService(parse("--db", str(database), "--listen", listen), reactor)
        with pytest.raises(SystemExit, match="cannot listen on"):
            service.privilegedStartService()
    if existed:
        assert database.read_bytes() == kept
    else:
        assert list(tmp_path.iterdir()) == []


@pytest_twisted.ensureDeferred
async def test_two_services_with_reuse_port_share_one_port():
    first = makeService(
        parse("--db", ":memory:", "--reuse-port", "--listen", "tcp:0:interface=127.0.0.1"), reactor
    )
    first.privilegedStartService()
    first.startService()
    try:
        (port,) = [await listener._waitingForPort for listener in first]
        number = port.getHost().port
        second = makeService(
            parse(
                "--db", ":memory:", "--reuse-port", "--listen", f"tcp:{number}:interface=127.0.0.1"
            ),
            reactor,
        )
        second.privilegedStartService()
        second.startService()
        await second.stopService()
    finally:
        await first.stopService()


def test_no_metrics_means_nothing_timed():
    service = makeService(parse("--db", ":memory:", "--redis", "redis://127.0.0.1:7000"), reactor)
    assert not [
        child for child in service if isinstance(getattr(child, "factory", None), MetricsSite)
    ]
    router = service.hub.router
    assert isinstance(router._backplane, RedisBackplane)
    assert not isinstance(router._storage, TimedStorage)


def test_listen_metrics_is_repeatable_with_the_backlog():
    options = parse(
        "--db", ":memory:", "--listen-metrics", "tcp:9100", "--listen-metrics", "tcp:9101"
    )
    assert options["listen-metrics"] == ["tcp:9100", "tcp:9101"]
    service = makeService(options, reactor)
    metrics = [
        child for child in service if isinstance(getattr(child, "factory", None), MetricsSite)
    ]
    assert [listener.description for listener in metrics] == ["tcp:9100", "tcp:9101"]
    assert all(listener.endpoint._backlog == DEFAULT_BACKLOG for listener in metrics)
    assert metrics[0].factory is metrics[1].factory, "one registry for the server"


def test_metrics_time_the_storage_and_the_backplane_the_chat_uses():
    options = parse(
        "--db", ":memory:", "--redis", "redis://127.0.0.1:7000", "--listen-metrics", "tcp:0"
    )
    service = makeService(options, reactor)
    router = service.hub.router
    (backplane,) = [child for child in service if isinstance(child, RedisBackplane)]
    assert isinstance(router._storage, TimedStorage)
    assert isinstance(router._backplane, TimedBackplane)
    assert router._backplane._backplane is backplane
    assert service.hub.accounts._storage is router._storage
