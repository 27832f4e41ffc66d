"""
The reactor's poll loop without Twisted's per-event log context.

L{EPollReactor.doPoll} wraps the read or write of each ready descriptor in
C{log.callWithLogger}, which builds a legacy logging context for every
event (the descriptor's log prefix, a dict copied and updated, a
thread-local looked up): about a microsecond and a half, a tenth of what a
one-line read costs chatroute in all. chatroute logs with
L{twisted.logger} and names the peer in its messages, so it needs no such
context. L{skip_log_context} gives an epoll reactor the same loop calling
C{_doReadOrWrite} directly, and logging what escapes it, as
C{callWithLogger} does.

It uses private parts of L{EPollReactor} (C{_poller}, C{_selectables},
C{_doReadOrWrite}), known for Twisted 24.7 to 26.10 (C{setup.cfg} keeps
Twisted below 27); another reactor, or one without them, keeps its loop.
"""

import errno
from typing import Any

from twisted.logger import Logger

log = Logger()

_PARTS = ("_poller", "_selectables", "_doReadOrWrite", "doPoll")


def skip_log_context(reactor: Any) -> bool:
    """
    Give C{reactor} the poll loop without a log context per event, if it
    is an epoll reactor with the parts this knows.

    @return: whether it did.
    """
    try:
        from twisted.internet.epollreactor import EPollReactor
    except ImportError:  # not on Linux
        return False
    if not isinstance(reactor, EPollReactor) or not all(hasattr(reactor, p) for p in _PARTS):
        return False

    poller = reactor._poller
    selectables = reactor._selectables
    handle = reactor._doReadOrWrite

    def doPoll(timeout: float | None) -> None:
        try:
            ready = poller.poll(-1 if timeout is None else timeout, len(selectables))
        except OSError as error:
            if error.errno == errno.EINTR:
                return
            raise
        for fd, event in ready:
            selectable = selectables.get(fd)
            if selectable is None:
                continue
            try:
                handle(selectable, fd, event)
            except KeyboardInterrupt:
                raise
            except BaseException:
                log.failure("handling an event of {selectable} failed", selectable=selectable)

    reactor.doPoll = reactor.doIteration = doPoll  # type: ignore[method-assign]
    return True
