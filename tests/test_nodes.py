"""C{python -m chatroute.nodes}: its options and the commands of its nodes."""

import pytest

from chatroute.nodes import _split, main, metrics_for_node, node_command, node_options


@pytest.mark.parametrize(
    ("argv", "split"),
    [
        (["--nodes", "2"], (2, [])),
        (["--nodes=3", "--port", "4000"], (3, ["--port", "4000"])),
        (["--db", "x.db", "--nodes", "1", "--reuse-port"], (1, ["--db", "x.db", "--reuse-port"])),
    ],
)
def test_nodes_and_the_options_of_each(argv, split):
    assert _split(argv) == split


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        ([], "--nodes N is missing"),
        (["--nodes"], "--nodes: expected a number of nodes from 1 to 64, got ''"),
        (["--nodes", "0"], "--nodes: expected a number of nodes from 1 to 64, got '0'"),
        (["--nodes", "two"], "--nodes: expected a number of nodes from 1 to 64, got 'two'"),
        (["--nodes=65"], "--nodes: expected a number of nodes from 1 to 64, got '65'"),
        (["--nodes", "2", "--redis", "redis://h"], "--nodes starts its own Redis; give no --redis"),
        (["--nodes", "2", "--redis=redis://h"], "--nodes starts its own Redis; give no --redis"),
        (
            ["--nodes", "2", "--listen-metrics", "systemd:domain=INET:index=0"],
            "--listen-metrics systemd:domain=INET:index=0: each node needs a metrics endpoint "
            "of its own, which --nodes makes of tcp, tcp6, ssl and unix endpoints only",
        ),
        (
            ["--nodes", "3", "--listen-metrics=tcp:65534"],
            "--listen-metrics tcp:65534: node 3 would need 65536",
        ),
    ],
)
def test_bad_options_are_refused(argv, problem):
    assert _split(argv) == problem


def test_a_usage_error_exits_with_2_and_says_why(capsys):
    assert main(["--nodes", "0"]) == 2
    assert "--nodes: expected a number of nodes from 1 to 64" in capsys.readouterr().err


def test_each_node_shares_its_ports_and_the_redis():
    assert node_command("redis://127.0.0.1:7000/0", ["--port", "4000"], twistd="twistd") == [
        "twistd", "--nodaemon", "--pidfile=", "chatroute", "--reuse-port",
        "--redis", "redis://127.0.0.1:7000/0", "--port", "4000",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("description", "second", "third"),
    [
        ("tcp:9150", "tcp:9151", "tcp:9152"),
        (
            "tcp:9150:interface=127.0.0.1",
            "tcp:9151:interface=127.0.0.1",
            "tcp:9152:interface=127.0.0.1",
        ),
        (
            "TCP:port=9150:interface=127.0.0.1",
            "TCP:port=9151:interface=127.0.0.1",
            "TCP:port=9152:interface=127.0.0.1",
        ),
        (
            "tcp:interface=127.0.0.1:port=9150",
            "tcp:interface=127.0.0.1:port=9151",
            "tcp:interface=127.0.0.1:port=9152",
        ),
        (
            "tcp6:9150:interface=\\:\\:1",
            "tcp6:9151:interface=\\:\\:1",
            "tcp6:9152:interface=\\:\\:1",
        ),
        ("ssl:9150:privateKey=k.pem", "ssl:9151:privateKey=k.pem", "ssl:9152:privateKey=k.pem"),
        ("tcp:0", "tcp:0", "tcp:0"),  # each node gets a port of its own anyway
        ("unix:/run/m.sock", "unix:/run/m.sock.2", "unix:/run/m.sock.3"),
        (
            "unix:address=/run/m.sock:mode=600",
            "unix:address=/run/m.sock.2:mode=600",
            "unix:address=/run/m.sock.3:mode=600",
        ),
    ],
)
def test_each_node_gets_a_metrics_endpoint_of_its_own(description, second, third):
    assert [metrics_for_node(description, index) for index in range(3)] == [
        description,
        second,
        third,
    ]


def test_only_the_metrics_options_are_moved():
    options = [
        "--port",
        "4000",
        "--listen-metrics",
        "tcp:9150",
        "--listen-metrics=unix:/m",
        "--db",
        "x",
    ]
    assert node_options(options, 1) == (
        [
            "--port",
            "4000",
            "--listen-metrics",
            "tcp:9151",
            "--listen-metrics=unix:/m.2",
            "--db",
            "x",
        ],
        ["tcp:9151", "unix:/m.2"],
    )
    assert node_options(options, 0) == (options, ["tcp:9150", "unix:/m"])
