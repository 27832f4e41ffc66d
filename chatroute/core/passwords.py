"""
Passwords: what counts as one, and hashing them with argon2id off the reactor thread.

Hashing is slow on purpose (tens of milliseconds and tens of megabytes with
the defaults), so it runs in a thread pool; the reactor keeps serving chat
meanwhile.
"""

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool


def normalise_password(password: str) -> str:
    """
    The password as typed, in the one form the server hashes and compares.

    White space at either end is not part of a password, and any run of white
    space inside counts as one space, so a passphrase typed with two spaces,
    or a tab, still matches. A password without white space is unchanged.
    Every front end's password goes through this (see L{chatroute.core.accounts}).
    """
    return " ".join(password.split())


class InvalidPasswordHash(ValueError):
    """A stored password hash that argon2 cannot read: corrupt, or of another scheme."""


class PasswordHashing:
    """
    Hashes and checks passwords with an argon2 L{PasswordHasher} in a thread pool.

    The default hasher uses argon2-cffi's defaults, the low-memory profile
    of RFC 9106 (argon2id, 64 MiB, 3 passes, 4 lanes). Hashes record their
    parameters, so after a change of parameters old hashes still verify and
    L{needs_rehash} tells which to replace.
    """

    def __init__(
        self,
        reactor: IReactorThreads,
        hasher: PasswordHasher | None = None,
        threadpool: ThreadPool | None = None,
    ) -> None:
        """
        @param reactor: delivers results from the pool's threads.
        @param hasher: the argon2 parameters for new hashes.
        @param threadpool: where hashing runs, by default the reactor's pool.
            A pool of its own bounds how many hashes, and how much of their
            memory, are computed at once.
        """
        self._reactor = reactor
        self._hasher = hasher if hasher is not None else PasswordHasher()
        self._threadpool = threadpool if threadpool is not None else reactor.getThreadPool()

    def hash(self, password: str) -> Deferred[str]:
        """Deferred firing with a new salted hash of C{password}."""
        return deferToThreadPool(self._reactor, self._threadpool, self._hasher.hash, password)

    def verify(self, password_hash: str, password: str) -> Deferred[bool]:
        """
        Check C{password} against C{password_hash}.

        @return: Deferred firing with whether they match, failing with
            L{InvalidPasswordHash} if C{password_hash} is not an argon2 hash.
        """
        return deferToThreadPool(
            self._reactor, self._threadpool, self._verify, password_hash, password
        )

    def needs_rehash(self, password_hash: str) -> bool:
        """
        Whether C{password_hash} was made with parameters other than the
        hasher's, and should be replaced by a new hash at the next login.
        Cheap: it only reads the parameters.

        @raise InvalidPasswordHash: C{password_hash} is not an argon2 hash.
        """
        try:
            return self._hasher.check_needs_rehash(password_hash)
        except InvalidHashError as error:
            raise InvalidPasswordHash("not an argon2 hash") from error

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except VerifyMismatchError:
            return False
        except (InvalidHashError, VerificationError) as error:
            # A VerificationError other than a mismatch: argon2 could not decode the hash.
            raise InvalidPasswordHash("not an argon2 hash") from error
