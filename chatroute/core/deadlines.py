"""
Timeouts for many connections: one timer for all of them.

A connection silent for too long, or too slow to choose a nickname, is
closed. With a timer per connection (Twisted's L{TimeoutMixin}), every read
resets its timer, two calls into the reactor, and every idle connection
carries a L{DelayedCall} of its own, about half a kilobyte. Here a
connection only notes when it last heard from its client; one heap orders
the connections by deadline, and one L{DelayedCall} waits for the earliest.
When a connection's entry comes up, the connection says when it is due now:
if it has been heard from since, its entry moves to the new deadline, so a
busy connection costs one move per timeout period, not one per line.
"""

from heapq import heappop, heappush
from typing import Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime


class Watched(Protocol):
    """What L{Deadlines} watches: a connection that knows when it is due."""

    def due_at(self) -> float | None:
        """When the connection times out, as it stands now; None if it never does."""

    def timed_out(self) -> None:
        """The connection's deadline has passed: close it."""


class Entry:
    """A connection's place in L{Deadlines}; L{Deadlines.cancel} ends it."""

    __slots__ = ("at", "watched")

    def __init__(self, at: float, watched: Watched) -> None:
        self.at = at
        self.watched: Watched | None = watched

    def __lt__(self, other: "Entry") -> bool:
        # Entries due at the same time may come up in any order.
        return self.at < other.at


class Deadlines:
    """The deadlines of every connection of a server, on one timer of C{clock}."""

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._heap: list[Entry] = []
        self._timer: IDelayedCall | None = None

    def watch(self, watched: Watched, at: float) -> Entry:
        """Ask C{watched} at time C{at} (or soon after) when it is due, and act on it."""
        entry = Entry(at, watched)
        heappush(self._heap, entry)
        if self._heap[0] is entry:
            self._set_timer()
        return entry

    def cancel(self, entry: Entry) -> None:
        """Stop watching; the entry leaves the heap when it comes up."""
        entry.watched = None

    def _set_timer(self) -> None:
        """Wait for the earliest entry, and no longer than that."""
        if not self._heap:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            return
        delay = max(0.0, self._heap[0].at - self._clock.seconds())
        if self._timer is None:
            self._timer = self._clock.callLater(delay, self._expire)
        else:
            self._timer.reset(delay)

    def _expire(self) -> None:
        """Act on every entry whose time has come: move it to its deadline, or time it out."""
        self._timer = None
        heap = self._heap
        now = self._clock.seconds()
        while heap and heap[0].at <= now:
            entry = heappop(heap)
            watched = entry.watched
            if watched is None:
                continue
            at = watched.due_at()
            if at is None:
                entry.watched = None
            elif at <= now:
                entry.watched = None
                watched.timed_out()
            else:
                entry.at = at
                heappush(heap, entry)
        self._set_timer()
