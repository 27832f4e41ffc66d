"""
How fast room history can be written to SQLite through group commit.

Writes C{--count} history messages with C{append_history}, keeping up to
C{--in-flight} writes waiting at a time, and prints messages per second and
the average batch size. Standalone: C{python bench/storage_write.py}.
"""

import argparse
import sys
import tempfile
from pathlib import Path

from twisted.internet import task
from twisted.internet.defer import Deferred, DeferredSemaphore, gatherResults
from twisted.internet.interfaces import IReactorTime

from chatroute.storage.sqlite import open_sqlite


async def run(reactor: IReactorTime, count: int, in_flight: int, directory: str) -> None:
    storage = open_sqlite(str(Path(directory) / "bench.db"), reactor)
    slots = DeferredSemaphore(in_flight)
    started = reactor.seconds()
    await gatherResults(
        [
            slots.run(storage.append_history, "#bench", "bencher", f"message {n}", started)
            for n in range(count)
        ]
    )
    elapsed = reactor.seconds() - started
    commits = storage.commits
    await storage.close()
    sys.stdout.write(
        f"{count} messages in {elapsed:.2f} s: {count / elapsed:,.0f} messages/s,"
        f" {commits} commits, {count / commits:.0f} messages per commit\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--count", type=int, default=100_000, help="messages to write")
    parser.add_argument("--in-flight", type=int, default=5_000, help="writes waiting at most")
    parser.add_argument("--directory", help="where to put the database (default: a temporary one)")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=arguments.directory) as directory:
        task.react(
            lambda reactor: Deferred.fromCoroutine(
                run(reactor, arguments.count, arguments.in_flight, directory)
            )
        )


if __name__ == "__main__":
    main()
