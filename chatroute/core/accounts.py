"""
Accounts: creating them, logging in, changing passwords.

Every password given here, to log in, to create an account or to change
one, is first normalised by L{normalise_password}, so every front end follows
the same rule. Passwords are checked through L{twisted.cred} (see
L{chatroute.core.auth}) and hashed off the reactor thread; failed logins are
slowed down per account and per address by a L{LoginThrottle}. What a login
grants, the nickname and the messages kept for it, is the router's business.
The server's connect password (C{--server-password-file}) is checked here
too, throttled per address like a login.
"""

import hmac

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import Portal
from twisted.logger import Logger

from chatroute.core.auth import AccountAvatar, IAccountAvatar, LoginThrottle
from chatroute.core.directory import Presence
from chatroute.core.errors import (
    AccountExists,
    BadPassword,
    LoginFailed,
    LoginThrottled,
    NotLoggedIn,
    NotRegistered,
    WrongPassword,
    WrongServerPassword,
)
from chatroute.core.events import AccountCreated, PasswordChanged
from chatroute.core.interfaces import IStorage
from chatroute.core.passwords import PasswordHashing, normalise_password
from chatroute.core.router import Router

MIN_PASSWORD = 8
MAX_PASSWORD = 1024

log = Logger()


def check_new_password(password: str) -> None:
    """
    Check a normalised password (see L{normalise_password}) against the rule.

    @raise BadPassword: C{password} is too short or too long.
    """
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise BadPassword(MIN_PASSWORD, MAX_PASSWORD)


class Accounts:
    """The rules of accounts, on top of a router, a store and a login portal."""

    def __init__(
        self,
        router: Router,
        storage: IStorage,
        hashing: PasswordHashing,
        portal: Portal,
        throttle: LoginThrottle,
    ) -> None:
        self._router = router
        self._storage = storage
        self._hashing = hashing
        self._portal = portal
        self._throttle = throttle

    async def log_in(self, presence: Presence, name: str, password: str, address: str) -> None:
        """
        Log the participant in to the account C{name}.

        @param address: where the attempt comes from, for throttling.
        @raise LoginThrottled: too many recent failures for the account or address.
        @raise LoginFailed: unknown name or wrong password (not said which).
        """
        registered = await self._check_password(name, normalise_password(password), address)
        log.info("{address} logged in as {name}", address=address, name=registered)
        await self._router.log_in(presence, registered)

    async def create(self, presence: Presence, password: str) -> None:
        """
        Make the participant's nickname an account with C{password}; the participant
        is then logged in to it.

        @raise NotRegistered: the participant has no nickname.
        @raise AccountExists: the nickname is already an account.
        @raise BadPassword: the password breaks the password rule.
        """
        nick = presence.nick
        if nick is None:
            raise NotRegistered()
        if presence.account:
            raise AccountExists(nick)
        password = normalise_password(password)
        check_new_password(password)
        await self._storage.create_account(nick, await self._hashing.hash(password))
        log.info("account {nick} created", nick=nick)
        marked = self._router.mark_account(presence, nick)
        if marked is not None:
            await marked
        presence.participant.deliver(AccountCreated(nick))

    async def change_password(self, presence: Presence, old: str, new: str, address: str) -> None:
        """
        Replace the logged-in account's password.

        @raise NotLoggedIn: the participant is not logged in to an account.
        @raise BadPassword: C{new} breaks the password rule.
        @raise LoginThrottled: too many recent failures.
        @raise WrongPassword: C{old} is wrong.
        """
        nick = presence.nick
        if nick is None or not presence.account:
            raise NotLoggedIn()
        new = normalise_password(new)
        check_new_password(new)
        try:
            await self._check_password(nick, normalise_password(old), address)
        except LoginFailed:
            raise WrongPassword() from None
        await self._storage.set_password_hash(nick, await self._hashing.hash(new))
        log.info("{nick} changed password", nick=nick)
        presence.participant.deliver(PasswordChanged())

    def check_server_password(self, given: str, expected: str, address: str) -> None:
        """
        Check a connection's server password against the server's, both
        normalised (L{normalise_password}); failures are throttled per address.

        @raise LoginThrottled: too many wrong ones came from C{address} lately.
        @raise WrongServerPassword: C{given} is not the server's password.
        """
        wait = self._throttle.check(None, address)
        if wait > 0:
            raise LoginThrottled(wait)
        given_bytes = normalise_password(given).encode()
        if not hmac.compare_digest(given_bytes, normalise_password(expected).encode()):
            self._throttle.failed(None, address)
            log.info("{address}: wrong server password", address=address)
            raise WrongServerPassword()

    async def _check_password(self, name: str, password: str, address: str) -> str:
        """
        Check a password through the portal, throttled.

        @return: the account's name as registered (C{name} may differ in case).
        """
        wait = self._throttle.check(name, address)
        if wait > 0:
            raise LoginThrottled(wait)
        try:
            _, avatar, _ = await self._portal.login(
                UsernamePassword(name.encode(), password.encode()), None, IAccountAvatar
            )
        except UnauthorizedLogin:
            self._throttle.failed(name, address)
            log.info("{address}: failed login to {name}", address=address, name=name)
            raise LoginFailed() from None
        self._throttle.succeeded(name, address)
        assert isinstance(avatar, AccountAvatar)
        return avatar.name
