"""Option values checked with errors that name the option, and -h and --version."""

from importlib import metadata

import pytest
from twisted.python.usage import UsageError

from chatroute.options import CommandOptions, non_negative_number, port_number, whole_number


@pytest.mark.parametrize(("text", "number"), [("0", 0), ("7", 7), ("007", 7)])
def test_whole_number(text, number):
    assert whole_number("n", 0)(text) == number


@pytest.mark.parametrize("text", ["", " 5", "+5", "1_000", "\u0665", "5.0", "-0", "11"])
def test_whole_number_refuses(text):
    with pytest.raises(UsageError) as raised:
        whole_number("n", 0, 10)(text)
    assert str(raised.value) == f"--n: expected a whole number from 0 to 10, got {text!r}"


def test_port_number_bounds():
    assert port_number("port")("65535") == 65535
    with pytest.raises(UsageError, match=r"^--port: expected a TCP port number 1-65535, got '0'$"):
        port_number("port", 1)("0")


@pytest.mark.parametrize(("text", "number"), [("0", 0.0), ("0.5", 0.5), ("1e3", 1000.0)])
def test_non_negative_number(text, number):
    assert non_negative_number("t", "seconds")(text) == number


@pytest.mark.parametrize("text", ["-0.1", "nan", "inf", "-inf", "soon", ""])
def test_non_negative_number_refuses(text):
    with pytest.raises(UsageError) as raised:
        non_negative_number("t", "seconds")(text)
    assert str(raised.value) == f"--t: expected a number of seconds, 0 or more, got {text!r}"


class Example(CommandOptions):
    command = "chatroute-example"


def test_version_names_the_command(capsys):
    with pytest.raises(SystemExit) as exited:
        Example().parseOptions(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"chatroute-example {metadata.version('chatroute')}\n"


def test_h_is_help(capsys):
    with pytest.raises(SystemExit) as exited:
        Example().parseOptions(["-h"])
    assert exited.value.code == 0
    assert "--help" in capsys.readouterr().out
