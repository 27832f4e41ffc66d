"""
What the options of every chatroute command share: C{-h}, C{--version}, and
values checked with errors that name the option and what it wants.

A coerce function that raises C{ValueError} gets Twisted's prefix
"Parameter type enforcement failed: ..."; one that raises
L{usage.UsageError} is passed on as it is, so the checks here raise that:
C{--port: expected a TCP port number 0-65535, got 'abc'}.
"""

import math
import sys
from collections.abc import Callable
from importlib import metadata
from typing import ClassVar, NoReturn

from twisted.python import usage


def version() -> str:
    """The installed chatroute's version."""
    try:
        return metadata.version("chatroute")
    except metadata.PackageNotFoundError:
        return "(unknown version: not installed)"


class CommandOptions(usage.Options):
    """
    Options with C{-h} for help and C{--version} for chatroute's version.

    @cvar command: the command's name, as C{--version} shows it.
    """

    command: ClassVar[str] = "chatroute"

    # Twisted leaves -h free for options such as --host; here it is help.
    opt_h = usage.Options.opt_help

    def parse_or_exit(self, argv: list[str] | None = None) -> None:
        """
        Parse C{argv}, by default the command line's arguments.

        @raise SystemExit: with 2 after saying what is wrong, for a usage error.
        """
        try:
            self.parseOptions(sys.argv[1:] if argv is None else argv)
        except usage.UsageError as error:
            synopsis = getattr(self, "synopsis", "")
            sys.stderr.write(f"{self.command}: {error}\n{synopsis}\n(--help for more)\n")
            raise SystemExit(2) from None

    def opt_version(self) -> NoReturn:
        """Display the chatroute version and exit."""
        sys.stdout.write(f"{self.command} {version()}\n")
        raise SystemExit(0)


def _refuse(option: str, wanted: str, text: str) -> NoReturn:
    raise usage.UsageError(f"--{option}: expected {wanted}, got {text!r}")


def whole_number(
    option: str, minimum: int, maximum: int | None = None, wanted: str | None = None
) -> Callable[[str], int]:
    """
    A coerce function for C{--option}: a whole number from C{minimum} (to C{maximum}).

    @param wanted: what the error says is expected, by default "a whole
        number, 0 or more" or "a whole number from 1 to 3650".
    """
    if wanted is None:
        wanted = (
            f"a whole number, {minimum} or more"
            if maximum is None
            else f"a whole number from {minimum} to {maximum}"
        )

    def parse(text: str) -> int:
        if not (text.isascii() and text.isdecimal()):
            _refuse(option, wanted, text)
        number = int(text)
        if number < minimum or (maximum is not None and number > maximum):
            _refuse(option, wanted, text)
        return number

    return parse


def port_number(option: str, minimum: int = 0) -> Callable[[str], int]:
    """A coerce function for C{--option}: a TCP port number from C{minimum} to 65535."""
    return whole_number(option, minimum, 65535, f"a TCP port number {minimum}-65535")


def non_negative_number(option: str, unit: str) -> Callable[[str], float]:
    """
    A coerce function for C{--option}: a finite number, 0 or more, of C{unit}
    ("seconds"); the error says "expected a number of seconds, 0 or more".
    """
    wanted = f"a number of {unit}, 0 or more"

    def parse(text: str) -> float:
        try:
            number = float(text)
        except ValueError:
            _refuse(option, wanted, text)
        if not 0 <= number < math.inf:  # also refuses NaN
            _refuse(option, wanted, text)
        return number

    return parse
