"""
The public IRC conformance suite, irctest, against the real server: the
modules chatroute claims (tests/irctest/run.py) pass with no failure.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.irctest.run import DEFAULT_IRCTEST

pytestmark = pytest.mark.integration

RUNNER = Path(__file__).resolve().parents[1] / "irctest" / "run.py"


@pytest.mark.skipif(
    not (DEFAULT_IRCTEST / "irctest").is_dir(),
    reason=f"no irctest snapshot at {DEFAULT_IRCTEST} (the project's shared/ folder)",
)
def test_irctest_passes_the_modules_chatroute_claims():
    result = subprocess.run(
        [sys.executable, str(RUNNER), "--", "-q"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in result.stdout.splitlines()[-1], result.stdout[-2000:]


CORE_MODULES = [
    "connection_registration",
    "messages",
    "join",
    "part",
    "names",
    "who",
    "quit",
    "pingpong",
    "topic",
    "kick",
    "channel",
    "utf8",
    "away",
    "whois",
    "lusers",
    "isupport",
]
CORE_MARKERS = (
    "not services and not IRCv3 and not Ergo and not deprecated and not strict"
    " and not implementation-specific"
)
NGIRCD_PASSES = 85
"""What ngIRCd 26.1 passes of the core modules under CORE_MARKERS (with 2 failures)."""


@pytest.mark.skipif(
    not (DEFAULT_IRCTEST / "irctest").is_dir(),
    reason=f"no irctest snapshot at {DEFAULT_IRCTEST} (the project's shared/ folder)",
)
def test_irctest_core_modules_pass_at_least_as_many_as_ngircd():
    """The sixteen core modules with IRCv3 left out: no failure, and ngIRCd's count or more."""
    result = subprocess.run(
        [sys.executable, str(RUNNER), *CORE_MODULES, "--", "-q", "-m", CORE_MARKERS],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    summary = result.stdout.splitlines()[-1]
    passed = re.search(r"(\d+) passed", summary)
    assert passed is not None and int(passed.group(1)) >= NGIRCD_PASSES, summary
