"""The package as built for a normal (non-editable) install puts the plugin where twistd looks."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(ROOT)],
        check=True,
        timeout=300,
    )
    (built,) = out.glob("chatroute-*.whl")
    return built


def test_wheel_ships_the_plugin_without_shadowing_twisted(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "twisted/plugins/chatroute_plugin.py" in names
    # An __init__.py here would replace Twisted's own package on install.
    assert "twisted/__init__.py" not in names
    assert "twisted/plugins/__init__.py" not in names
    assert "chatroute/tap.py" in names
    assert "chatroute/storage/schema/sqlite/v2.sql" in names
    assert "chatroute/storage/schema/sqlite/upgrade-v1-to-v2.sql" in names
    assert "chatroute/storage/schema/postgres/v2.sql" in names
    for page in ("index.html", "chat.js", "chat.css"):
        assert f"chatroute/frontends/page/{page}" in names


def test_twistd_finds_the_plugin_in_a_normal_install(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", target, wheel],
        check=True,
        timeout=300,
    )
    twisted_home = Path(__import__("twisted").__file__).parent.parent
    # -S: no site-packages .pth files, so the editable install of this
    # checkout is out of sight and only the installed copy can be found.
    result = subprocess.run(
        [
            sys.executable,
            "-S",
            "-c",
            "import chatroute, sys;"
            "from twisted.plugin import getPlugins;"
            "from twisted.application.service import IServiceMaker;"
            "print(chatroute.__file__);"
            "print(sorted(p.tapname for p in getPlugins(IServiceMaker)))",
        ],
        env={"PYTHONPATH": f"{target}:{twisted_home}", "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    location, plugins = result.stdout.splitlines()[:2]
    assert location.startswith(str(target))
    assert "'chatroute'" in plugins
