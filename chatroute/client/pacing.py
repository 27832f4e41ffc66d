"""
The client's side of the flood limit: lines go out in order, no faster than
the server takes them, so a paste or a piped script arrives whole.
"""

from collections import deque
from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from chatroute.core.limits import TokenBucket

SAFETY = 0.9
"""The share of the server's rate the client uses, so that lines bunched up on the way still fit."""


class Pacer:
    """
    Writes lines through C{write} at most as fast as a server's flood limit allows.

    It keeps below the limit: it uses 90% of the server's rate and half
    its burst, so lines that the network delays and then delivers together
    still find tokens at the server. Until L{pace} is called lines are
    held (the client is asking the server for its limits), unless the
    pacer is made already L{released}.
    """

    def __init__(
        self, write: Callable[[bytes], None], clock: IReactorTime, released: bool = True
    ) -> None:
        """
        @param write: sends one line, with its line ending, to the server.
        @param released: send at once, unlimited, until L{pace} or L{hold}.
        """
        self._write = write
        self._clock = clock
        self._queue: deque[bytes] = deque()
        self._bucket: TokenBucket | None = None
        self._held = not released
        self._timer: IDelayedCall | None = None

    def hold(self) -> None:
        """Hold every line from now on, until L{pace}."""
        self._held = True

    def pace(self, rate: float, burst: int) -> None:
        """
        Send the held lines, and all after, within a server limit of
        C{rate} lines a second and bursts of C{burst}; a rate of 0 means
        no limit.
        """
        self._held = False
        self._bucket = TokenBucket(rate * SAFETY, max(1, burst // 2), self._clock) if rate else None
        self._send_what_may_go()

    def send(self, line: bytes) -> None:
        """Send C{line} (with its ending) after those before it, when the limit allows."""
        self._queue.append(line)
        if self._timer is None:
            self._send_what_may_go()

    @property
    def waiting(self) -> int:
        """How many lines wait to be sent."""
        return len(self._queue)

    def stop(self) -> int:
        """Send nothing more; how many lines were still waiting."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        left = len(self._queue)
        self._queue.clear()
        return left

    def _send_what_may_go(self) -> None:
        self._timer = None
        if self._held:
            return
        queue, bucket = self._queue, self._bucket
        while queue:
            if bucket is not None and not bucket.take():
                self._timer = self._clock.callLater(bucket.delay(), self._send_what_may_go)
                return
            self._write(queue.popleft())
