"""C{python -m chatroute.nodes}: its options and the commands of its nodes."""

import pytest

from chatroute.nodes import _split, main, node_command


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
