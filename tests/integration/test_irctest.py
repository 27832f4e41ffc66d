"""
The public IRC conformance suite, irctest, against the real server: the
modules chatroute claims (tests/irctest/run.py) pass with no failure.
"""

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
