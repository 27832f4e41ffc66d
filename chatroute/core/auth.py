"""
Logging in to an account, with L{twisted.cred}, and slowing down guessers.

A front end logs a connection in with::

    portal = login_portal(storage, hashing)
    wait = throttle.check(nick, host)   # refuse while wait > 0
    interface, avatar, logout = await portal.login(
        UsernamePassword(nick.encode(), password.encode()), None, IAccountAvatar
    )

which fails with L{UnauthorizedLogin} for an unknown name and a wrong
password alike; it then tells the L{LoginThrottle} with C{failed} or
C{succeeded}.
"""

from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm, Portal
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import Attribute, Interface, implementer

from chatroute.core.interfaces import IStorage
from chatroute.core.passwords import InvalidPasswordHash, PasswordHashing
from chatroute.storage import name_key

log = Logger()


class IAccountAvatar(Interface):
    """What a successful login yields: the account, as the rest of chatroute needs it."""

    name = Attribute("The account's name as registered (C{str}).")


@implementer(IAccountAvatar)
@dataclass(frozen=True, slots=True)
class AccountAvatar:
    """A logged-in account; C{name} is as registered, whatever case was typed."""

    name: str


@implementer(IRealm)
class AccountRealm:
    """Turns the avatar ID of a checked login, an account name, into an L{IAccountAvatar}."""

    def requestAvatar(
        self, avatarId: bytes | tuple[()], mind: object, *interfaces: type[Interface]
    ) -> tuple[type[Interface], object, Callable[[], None]]:
        """
        See L{IRealm.requestAvatar}; logging out needs no clean-up.

        @param avatarId: the account name, UTF-8 encoded, as
            L{StoredPasswordChecker} gives it.
        @raise NotImplementedError: C{IAccountAvatar} is not among the
            C{interfaces}, or the login was anonymous.
        """
        if IAccountAvatar not in interfaces or not isinstance(avatarId, bytes):
            raise NotImplementedError("only named logins to IAccountAvatar are supported")
        return IAccountAvatar, AccountAvatar(avatarId.decode()), lambda: None


@implementer(ICredentialsChecker)
class StoredPasswordChecker:
    """
    Checks a name and password against the accounts in an L{IStorage}.

    A password whose stored hash was made with other argon2 parameters than
    the current ones is re-hashed and stored at login, before the login
    completes (so once per account after a change of parameters); that
    failing is logged and does not fail the login.
    """

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self, storage: IStorage, hashing: PasswordHashing) -> None:
        self._storage = storage
        self._hashing = hashing
        self._decoy_hash: str | None = None

    def requestAvatarId(self, credentials: IUsernamePassword) -> Deferred[bytes | tuple[()]]:
        """
        See L{ICredentialsChecker.requestAvatarId}.

        @return: Deferred firing with the account's name as registered, UTF-8
            encoded (Twisted's avatar IDs are bytes), failing with
            L{UnauthorizedLogin} for an unknown name or a wrong password.
        """
        return Deferred.fromCoroutine(self._check(credentials.username, credentials.password))

    async def _check(self, username: bytes, password_bytes: bytes) -> bytes | tuple[()]:
        try:
            name, password = username.decode(), password_bytes.decode()
        except UnicodeDecodeError:
            raise UnauthorizedLogin() from None
        account = await self._storage.get_account(name)
        if account is None:
            # Take as long as checking a real account's password does, so
            # that timing does not tell which names are registered.
            await self._hashing.verify(await self._decoy(), password)
            raise UnauthorizedLogin()
        try:
            matches = await self._hashing.verify(account.password_hash, password)
        except InvalidPasswordHash:
            log.error("the stored password hash of {name} is unusable", name=account.name)
            raise UnauthorizedLogin() from None
        if not matches:
            raise UnauthorizedLogin()
        if self._hashing.needs_rehash(account.password_hash):
            await self._rehash(account.name, password)
        return account.name.encode()

    async def _decoy(self) -> str:
        """A hash to check passwords for unknown names against, made once."""
        if self._decoy_hash is None:
            self._decoy_hash = await self._hashing.hash("not anyone's password")
        return self._decoy_hash

    async def _rehash(self, name: str, password: str) -> None:
        try:
            await self._storage.set_password_hash(name, await self._hashing.hash(password))
        except Exception:
            log.failure("replacing the outdated password hash of {name} failed", name=name)
        else:
            log.info("re-hashed the password of {name} with the current parameters", name=name)


def login_portal(storage: IStorage, hashing: PasswordHashing) -> Portal:
    """
    A portal logging accounts in by name and password.

    @return: a L{Portal} whose C{login(UsernamePassword(name, password), None,
        IAccountAvatar)} fires with C{(IAccountAvatar, avatar, logout)} or
        fails with L{UnauthorizedLogin}.
    """
    return Portal(AccountRealm(), [StoredPasswordChecker(storage, hashing)])


@dataclass(slots=True)
class _Record:
    """
    The failed logins of one account or one address.

    @ivar failures: when the failures of the last window happened, oldest first.
    @ivar last: when the latest failure happened.
    @ivar locked_until: when a lockout ends; in the past if there is none.
    """

    failures: deque[float]
    last: float
    locked_until: float = 0.0


class LoginThrottle:
    """
    Slows down password guessing, per account and per source address.

    After each failed login the next attempt for that account, and from that
    address, must wait: nothing after the first C{free_failures} failures,
    then C{first_delay} seconds, doubling with each further failure up to
    C{max_delay}. C{lockout_failures} failures within C{window} seconds lock
    the account or address out for C{lockout} seconds, after which it starts
    afresh. With the defaults the waits are 0, 0, 1, 2, 4, ... 32, 60 s and
    the tenth failure in 15 minutes locks out for 15 minutes.

    An account's or address's record is forgotten C{max(window, lockout)}
    seconds after its latest failure, so memory grows only with the failures
    of that long.
    """

    def __init__(
        self,
        clock: IReactorTime,
        *,
        free_failures: int = 2,
        first_delay: float = 1.0,
        max_delay: float = 60.0,
        lockout_failures: int = 10,
        window: float = 15 * 60.0,
        lockout: float = 15 * 60.0,
    ) -> None:
        """
        @param clock: tells the time.
        @param free_failures: failures in the window that cost no wait.
        @param first_delay: seconds to wait after the first failure past those.
        @param max_delay: the longest wait short of a lockout, in seconds.
        @param lockout_failures: failures in the window that cause a lockout.
        @param window: seconds a failure counts for.
        @param lockout: seconds a lockout lasts.
        """
        self._clock = clock
        self._free_failures = free_failures
        self._first_delay = first_delay
        self._max_delay = max_delay
        self._lockout_failures = lockout_failures
        self._window = window
        self._lockout = lockout
        # By key, in the order of their latest failure, oldest first, so that
        # pruning stops at the first record still needed. OrderedDict: it
        # finds its first key in constant time however many were deleted.
        self._records: OrderedDict[tuple[str, str], _Record] = OrderedDict()

    @property
    def tracked(self) -> int:
        """How many accounts and addresses have failures on record, for monitoring."""
        return len(self._records)

    def check(self, account: str | None, address: str) -> float:
        """
        Seconds before a login to C{account} from C{address} may be tried;
        0 if it may be tried now. With no account (a server password), only
        the address counts.
        """
        now = self._clock.seconds()
        self._prune(now)
        return max(self._wait(key, now) for key in self._keys(account, address))

    def failed(self, account: str | None, address: str) -> None:
        """A login to C{account} (None: a server password) from C{address} failed."""
        now = self._clock.seconds()
        for key in self._keys(account, address):
            record = self._records.setdefault(key, _Record(deque(), now))
            self._records.move_to_end(key)
            self._forget_old(record, now)
            record.failures.append(now)
            record.last = now
            if len(record.failures) >= self._lockout_failures:
                record.locked_until = now + self._lockout
                record.failures.clear()
                log.warn(
                    "{kind} {name} locked out for {seconds} s after {count} failed logins",
                    kind=key[0],
                    name=key[1],
                    seconds=self._lockout,
                    count=self._lockout_failures,
                )
        self._prune(now)

    def succeeded(self, account: str, address: str) -> None:
        """
        A login to C{account} from C{address} succeeded: forget the account's
        failures.

        The address's are kept: otherwise a guesser could clear them by
        logging in to an account of its own between guesses.
        """
        self._records.pop(_account_key(account), None)

    def _keys(self, account: str | None, address: str) -> tuple[tuple[str, str], ...]:
        if account is None:
            return (("address", address),)
        return _account_key(account), ("address", address)

    def _wait(self, key: tuple[str, str], now: float) -> float:
        record = self._records.get(key)
        if record is None:
            return 0.0
        if record.locked_until > now:
            return record.locked_until - now
        self._forget_old(record, now)
        return max(0.0, record.last + self._delay(len(record.failures)) - now)

    def _delay(self, failures: int) -> float:
        """The wait after the C{failures}th failure of the window."""
        doublings = failures - self._free_failures - 1
        if doublings < 0:
            return 0.0
        # Capping the exponent keeps 2 ** doublings finite for any settings.
        return min(self._first_delay * 2.0 ** min(doublings, 64), self._max_delay)

    def _forget_old(self, record: _Record, now: float) -> None:
        failures = record.failures
        while failures and failures[0] <= now - self._window:
            failures.popleft()

    def _prune(self, now: float) -> None:
        """Forget the records whose failures are all out of the window and whose lockout ended."""
        keep_for = max(self._window, self._lockout)
        records = self._records
        while records:
            oldest = next(iter(records))
            if now - records[oldest].last < keep_for:
                break
            del records[oldest]


def _account_key(account: str) -> tuple[str, str]:
    return "account", name_key(account)
