"""
Sending bytes to a client now, when the kernel will take them; and noticing
a client that does not take them at all.

Twisted's C{transport.write} queues the data and sends it on a later reactor
turn, registering the socket for writability and unregistering it after: two
C{epoll_ctl} calls and a turn per write. A chat server writes small lines to
many sockets whose kernel buffers are nearly always empty, so that machinery
costs more than the sending itself (measured in docs/performance.md: it is
most of the cost of a room message to 200 members). L{SendsAtOnce} sends at once
when the transport has nothing queued, and hands Twisted whatever the kernel
did not take, which keeps the order, flow control and error handling
Twisted's.
"""

from typing import Any

from twisted.internet.interfaces import IPushProducer, ITransport
from twisted.internet.tcp import Connection
from zope.interface import implementer

from chatroute.core.session import ConnectionSession

_QUEUE_FIELDS = ("_tempDataLen", "dataBuffer")
"""The fields of Twisted's Connection that tell whether its write queue is empty."""


def direct_connection(transport: ITransport) -> Connection | None:
    """
    C{transport}, if L{SendsAtOnce} may send to its socket itself; else None.

    Only plain TCP connections are sent to directly; any other transport
    (TLS, in-memory, ...) gets its own C{write}. This reads private fields of
    Twisted's L{Connection} (its queue), known for Twisted 24.7 to 26.10
    (C{setup.cfg} keeps Twisted below 27 for it, and a test sends through a
    real socket); a Twisted without them gets its own C{write} too.
    """
    if (
        not isinstance(transport, Connection)
        or transport.TLS
        or not all(hasattr(transport, field) for field in _QUEUE_FIELDS)
    ):
        return None
    return transport


class SendsAtOnce:
    """
    A protocol whose C{write} sends at once when it can: a mixin for a
    L{Protocol} that sets C{_direct} (in its own slots) to
    L{direct_connection} of its transport.

    A method rather than a function made per connection, as that (a closure
    and its cells) took about 0.4 KiB of every idle connection.
    """

    __slots__ = ()

    transport: Any
    _direct: Connection | None

    def write(self, data: bytes) -> None:
        """Send C{data}: now if nothing waits in the transport's queue, else after it."""
        connection = self._direct
        # The transport's queue (dataBuffer and the list _tempDataBuffer) is
        # empty exactly when both are: Twisted empties dataBuffer once it is
        # all sent. Then nothing sent now can overtake queued data.
        if (
            connection is None
            or connection._tempDataLen
            or connection.dataBuffer
            or not connection.connected
            or connection.disconnecting
        ):
            self.transport.write(data)
            return
        try:
            sent = connection.socket.send(data)
        except OSError:
            sent = 0  # Full (EAGAIN) or broken: Twisted's write finds out which.
        if sent < len(data):
            connection.write(data[sent:])


def limit_send_buffer(transport: ITransport, limit: int) -> None:
    """
    Make Twisted pause C{transport}'s producer once more than C{limit} bytes
    wait to be sent on it (see L{SlowReaderGuard}).
    """
    # Under TLS the bytes wait in the TCP connection the TLS layer writes to.
    socket_transport: Any = getattr(transport, "transport", None) or transport
    socket_transport.bufferSize = limit


@implementer(IPushProducer)
class SlowReaderGuard:
    """
    Registered with a client's transport so that Twisted tells us when more
    than the send-buffer limit waits to be sent to that client.
    """

    __slots__ = ("_limit", "_session")

    def __init__(self, session: ConnectionSession, limit: int) -> None:
        self._session = session
        self._limit = limit

    def pauseProducing(self) -> None:
        """The transport's buffer is over the limit: the client is not reading."""
        self._session.not_reading(self._limit)

    def resumeProducing(self) -> None:
        """The buffer drained; nothing to do."""

    def stopProducing(self) -> None:
        """The connection is closing; nothing to do."""
