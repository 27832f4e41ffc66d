"""
Real services for the tests: a private PostgreSQL server.

It lives in a temporary directory of its own (its data, its log, its Unix
socket), listens on a free port of 127.0.0.1 only, and is stopped and
removed afterwards: no system service is used or touched. PostgreSQL refuses
to run as root, so when the tests run as root it runs as the C{postgres}
user, which Debian's packages create.
"""

import getpass
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from itertools import count
from pathlib import Path

from .redis_server import free_port

# Generous, because a loaded machine is slow; pg_ctl polls, and returns as
# soon as the server accepts connections or has stopped.
START_TIMEOUT = 60
STOP_TIMEOUT = 60
# initdb's own commands take seconds at the most.
COMMAND_TIMEOUT = 120
# Attempts at a free port, in case another process takes it before the server listens.
PORT_ATTEMPTS = 5

_DEBIAN_BINARIES = Path("/usr/lib/postgresql")


def _debian_versions() -> Iterator[Path]:
    """Debian's PostgreSQL binary directories, newest first."""
    if not _DEBIAN_BINARIES.is_dir():
        return
    found = [path for path in _DEBIAN_BINARIES.glob("*/bin") if (path / "initdb").exists()]
    numeric = [path for path in found if re.fullmatch(r"\d+", path.parent.name)]
    yield from sorted(numeric, key=lambda path: int(path.parent.name), reverse=True)


def postgres_binaries() -> Path | None:
    """
    The directory holding C{initdb}, C{pg_ctl} and C{postgres}: Debian's
    newest (C{/usr/lib/postgresql/N/bin}, which is not on C{PATH}), or the
    one C{initdb} on C{PATH} is in. None if there is none.
    """
    for directory in _debian_versions():
        if all((directory / tool).exists() for tool in ("pg_ctl", "postgres")):
            return directory
    initdb = shutil.which("initdb")
    if initdb is None:
        return None
    directory = Path(initdb).resolve().parent
    if all((directory / tool).exists() for tool in ("pg_ctl", "postgres")):
        return directory
    return None


class PostgresError(Exception):
    """The private server could not be set up, started or stopped; the message says why."""


class PostgresServer:
    """
    A private PostgreSQL server: C{initdb} into a temporary directory, then
    L{start}, L{stop} and L{restart} (on the same port and directory), and
    L{remove} at the end.

    @ivar port: the port it listens on, once started.
    @ivar user: its superuser, whom tests connect as (trusted on loopback).
    """

    def __init__(self, binaries: Path) -> None:
        """
        Create the server's directory and data (not started yet).

        @raise PostgresError: initdb failed.
        """
        self._binaries = binaries
        self.directory = Path(tempfile.mkdtemp(prefix="chatroute-pg-"))
        self._data = self.directory / "data"
        self.log_path = self.directory / "server.log"
        self.port: int | None = None
        self._databases = count(1)
        self.running = False
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.directory, owner.pw_uid, owner.pw_gid)
            self._as_owner = ["runuser", "-u", "postgres", "--"]
            self.user = "postgres"
        else:
            self._as_owner = []
            self.user = getpass.getuser()
        self._run(
            "initdb", "-D", str(self._data), "--auth=trust", "--encoding=UTF8",
            "--locale=C.UTF-8", "--no-sync", f"--username={self.user}",
        )  # fmt: skip

    def _run(self, tool: str, *arguments: str, timeout: float = COMMAND_TIMEOUT) -> None:
        command = [*self._as_owner, str(self._binaries / tool), *arguments]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as timed_out:
            raise PostgresError(f"{tool} took more than {timeout} s: {command}") from timed_out
        if done.returncode != 0:
            raise PostgresError(
                f"{tool} failed ({done.returncode}): {command}\n{done.stdout}{done.stderr}"
                f"\nserver log:\n{self.log()}"
            )

    def log(self) -> str:
        """What the server has logged so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(none)"

    def start(self) -> None:
        """
        Start the server and wait (pg_ctl polls, within L{START_TIMEOUT})
        until it accepts connections. The first start chooses a free port;
        later ones reuse it.

        @raise PostgresError: it did not start.
        """
        if self.port is not None:
            ports = [self.port]
        else:
            ports = [free_port() for _ in range(PORT_ATTEMPTS)]
        for attempt, port in enumerate(ports, 1):
            options = (
                f"-p {port} -k {self.directory} -c listen_addresses=127.0.0.1"
                # Test data: nothing need survive a crash of the machine.
                " -c fsync=off -c shared_buffers=16MB"
            )
            try:
                self._run(
                    "pg_ctl", "-D", str(self._data), "-l", str(self.log_path), "-o", options,
                    "-w", "-t", str(START_TIMEOUT), "start",
                    timeout=START_TIMEOUT + 10,
                )  # fmt: skip
            except PostgresError:
                if attempt == len(ports):
                    raise
            else:
                self.port = port
                self.running = True
                return

    def stop(self) -> None:
        """Stop the server at once, as an administrator would (C{pg_ctl stop -m fast})."""
        self._run(
            "pg_ctl", "-D", str(self._data), "-m", "fast", "-w", "-t", str(STOP_TIMEOUT), "stop",
            timeout=STOP_TIMEOUT + 10,
        )  # fmt: skip
        self.running = False

    def restart(self) -> None:
        """Stop the server and start it again on the same port, with the same data."""
        self.stop()
        self.start()

    def url(self, database: str) -> str:
        """The libpq URL of one of the server's databases."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new, empty database; its name."""
        import psycopg

        name = f"test_{next(self._databases)}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as admin:
            # FILE_COPY: a copy of the template's files, faster than WAL_LOG for a tiny database.
            admin.execute(f"CREATE DATABASE {name} STRATEGY FILE_COPY")
        return name

    def drop_database(self, name: str) -> None:
        """Remove a database, ending any connection still open to it."""
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def remove(self) -> None:
        """Stop the server if it runs, and remove its directory."""
        try:
            if self.running or (self._data / "postmaster.pid").exists():
                self.stop()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)
