"""
The limits that keep one client from hurting the others: floods, too many
connections, silent connections, and clients that stop reading.

Each limit is a number in L{Limits}; 0 turns it off. The protocol applies
them; the pieces with state of their own (a token bucket per connection, the
connection counts) live here.
"""

from collections import Counter
from dataclasses import dataclass

from twisted.internet.interfaces import IReactorTime

from chatroute.core.errors import ChatError, ServerFull, TooManyConnections


@dataclass(frozen=True, slots=True)
class Limits:
    """
    How much one client may do; 0 turns a limit off. The defaults are for a
    public server.

    @ivar flood_rate: lines per second a connection may send, on average.
    @ivar flood_burst: lines it may send at once, above the rate.
    @ivar max_per_address: connections from one IP address.
    @ivar max_connections: connections in all.
    @ivar register_timeout: seconds a connection may take to choose a nickname.
    @ivar idle_timeout: seconds a client may send nothing (C{/ping} keeps it alive).
    @ivar max_send_buffer: bytes that may wait to be sent to one client
        that is not reading, before it is disconnected.
    """

    flood_rate: float = 10.0
    flood_burst: int = 20
    max_per_address: int = 20
    max_connections: int = 10_000
    register_timeout: float = 60.0
    idle_timeout: float = 900.0
    max_send_buffer: int = 1024 * 1024


class TokenBucket:
    """
    Allows C{rate} events a second on average and C{burst} at once.

    It holds up to C{burst} tokens, gains C{rate} a second, and each event
    takes one.
    """

    __slots__ = ("_burst", "_clock", "_rate", "_stamp", "_tokens")

    def __init__(self, rate: float, burst: int, clock: IReactorTime) -> None:
        self._rate = rate
        self._burst = float(max(burst, 1))
        self._clock = clock
        self._tokens = self._burst
        self._stamp = clock.seconds()

    def take(self) -> bool:
        """Take a token if there is one; False means the event is over the limit."""
        tokens = self._refill()
        if tokens < 1.0:
            return False
        self._tokens = tokens - 1.0
        return True

    def delay(self) -> float:
        """Seconds until a token will be there (0 if one is there now)."""
        # A microsecond more, so that rounding cannot leave the token just short then.
        return max(0.0, (1.0 - self._refill()) / self._rate + 1e-6)

    def _refill(self) -> float:
        now = self._clock.seconds()
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        return self._tokens


class ConnectionCounter:
    """Counts open connections, in all and per address, against their limits."""

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._total = 0
        self._per_address: Counter[str] = Counter()

    def admit(self, address: str) -> ChatError | None:
        """
        Count a new connection from C{address}, if the limits allow it.

        @return: None if admitted (call L{release} when it closes), else why not:
            L{ServerFull} or L{TooManyConnections}.
        """
        limits = self._limits
        if limits.max_connections and self._total >= limits.max_connections:
            return ServerFull(limits.max_connections)
        if limits.max_per_address and self._per_address[address] >= limits.max_per_address:
            return TooManyConnections(address, limits.max_per_address)
        self._total += 1
        self._per_address[address] += 1
        return None

    def release(self, address: str) -> None:
        """An admitted connection from C{address} closed."""
        self._total -= 1
        self._per_address[address] -= 1
        if not self._per_address[address]:
            del self._per_address[address]
