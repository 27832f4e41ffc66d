"""
Run irctest against chatroute on the modules chatroute passes, and fail on any failure.

    .venv/bin/python tests/irctest/run.py [--irctest DIR] [MODULE ...] [-- PYTEST ARGS]

irctest (a checkout of it; C{../shared/irctest} by default, or C{$IRCTEST})
is run read-only: no cache, its own C{pytest.ini}. The modules and the known
failures below are what chatroute claims; each known failure says why: what
it waits for, or how chatroute differs on purpose. Exit status: pytest's
(0: everything selected passed or was skipped).
"""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[2]
DEFAULT_IRCTEST = CHECKOUT.parent / "shared" / "irctest"
MARKERS = (
    "not services and not Ergo and not deprecated and not strict and not implementation-specific"
)
MODULES = (
    "connection_registration",
    "pingpong",
    "messages",
    "join",
    "isupport",
    "utf8",
    "sasl",
    "cap",
    "kick",
    "channel",
    "chmodes/ban",
    "away",
    "who",
    "whois",
    "chmodes/operator",
    "part",
    "quit",
    "topic",
    "names",
    "lusers",
)
_NO_OPER = "no server operators: OPER is an unknown command, and the test needs one"
KNOWN_FAILURES = {
    "who.py::WhoTestCase::testWhoNickOper[exact]": _NO_OPER,
    "who.py::WhoTestCase::testWhoNickOper[casefolded]": _NO_OPER,
    "who.py::WhoTestCase::testWhoNickOper[mask]": _NO_OPER,
    "who.py::WhoTestCase::testWhoNickAwayAndOper[exact]": _NO_OPER,
    "who.py::WhoTestCase::testWhoNickAwayAndOper[casefolded]": _NO_OPER,
    "who.py::WhoTestCase::testWhoNickAwayAndOper[mask]": _NO_OPER,
    "whois.py::WhoisTestCase::testWhoisNumerics[oper]": _NO_OPER,
    "who.py::WhoInvisibleTestCase::testWhoInvisible": "no invisible users: MODE +i is "
    "answered with the modes as they are (221), as anyone's /who on the line protocol lists "
    "everyone online, so no one is hidden from WHO masks",
}


def main(argv: list[str]) -> int:
    extra: list[str] = []
    if "--" in argv:
        index = argv.index("--")
        argv, extra = argv[:index], argv[index + 1 :]
    irctest = Path(os.environ.get("IRCTEST", DEFAULT_IRCTEST))
    if argv[:1] == ["--irctest"]:
        irctest, argv = Path(argv[1]), argv[2:]
    modules = argv or list(MODULES)
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-c",
        str(irctest / "pytest.ini"),
        "--rootdir",
        str(irctest),
        "-p",
        "tests.irctest.deselect",
        "--controller",
        "tests.irctest.chatroute_controller",
        "-m",
        MARKERS,
        *(f"irctest/server_tests/{module}.py" for module in modules),
        *extra,
    ]
    # irctest keeps the ports it hands out in a file under the temporary
    # directory; a directory of this run's own keeps other runs out of it.
    with tempfile.TemporaryDirectory(prefix="chatroute-irctest-") as scratch:
        env = dict(
            os.environ,
            TMPDIR=scratch,
            PYTHONPATH=os.pathsep.join([str(CHECKOUT), str(irctest)]),
            CHATROUTE_IRCTEST_DESELECT="\n".join(
                f"irctest/server_tests/{test}" for test in KNOWN_FAILURES
            ),
        )
        return subprocess.call(command, cwd=irctest, env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
