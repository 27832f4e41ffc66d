"""
The Redis backplane: several chatroute nodes, one chat (C{--redis URL}).

Redis holds the network's state (who is online on which node and whether
as an account, rooms with their members, operators, voices, bans, modes,
topics and creation times) and orders every change to it:
each change runs as one Lua script (C{backplane.lua}) that checks it against
the shared state, applies it, numbers it and publishes it on one events
channel. Every node subscribes to that channel and applies the events, in
their one order, to its own copy of the state, which is the router's
L{IDirectory}: the router goes on reading users and rooms synchronously,
and delivers to the members on its node; users of other nodes are inert
L{Presence}s there (a L{RemoteParticipant} forwards direct messages to
their node, and does nothing else). A room's events thus reach every member
on every node in one order, the sender's own node included.

Nicknames are held under their node's lease (L{LEASE} seconds), which a
live node renews every L{BEAT} seconds; every renewal also takes the users
of nodes whose lease ran out off the network (they leave their rooms, their
names are free). A claim of a name whose node's lease ran out takes it at
once.

Direct messages to a user on another node are published to that node's
inbox, those of one reactor turn to one node together, in one message (at
most L{FORWARD_BATCH}; L{chatroute.backplane.batch}): a plain C{PUBLISH}, no
script. If no one receives it (the node is gone), each of its messages is
kept as for an offline account, and its sender told so; or, for a guest,
the sender is told there is no such user. So is one to a user of this node
who left a moment ago, while the network has not yet let their name go.
Anything else this node sends to Redis sends the waiting direct messages
first, so Redis gets everything in the order it was asked.

When Redis goes away, the links retry with backoff (L{RedisLink}); changes
are refused meanwhile (L{BackplaneUnavailable}). When both links are back,
the node asserts its users and their rooms again (Redis may have restarted
empty, or forgotten the node), then reads the whole state afresh. What
happened meanwhile elsewhere is then in its copy, but its users were not
told of it event by event (room messages published while it got in step
are delivered, though). Asserting them again publishes what was written,
and the nodes already in step take it in its place among the events, as
they take any change: once a node is in step, it refuses nothing until it
is cut off again. A change asked for while the node reads the state afresh
with both links up (it missed events, say) waits until it is done.
"""

import json
from collections.abc import Callable
from importlib.resources import files
from typing import Any, ClassVar
from uuid import uuid4

import txredisapi
from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from chatroute.backplane.batch import DirectBatch, decode
from chatroute.backplane.connection import RedisAddress, RedisLink, RedisUnavailable
from chatroute.core.directory import TOPIC_LOCK, LocalDirectory, Presence, Room
from chatroute.core.errors import (
    AlreadyBanned,
    AlreadyInRoom,
    AlreadyOperator,
    AlreadyVoiced,
    BackplaneUnavailable,
    BannedFromRoom,
    ChatError,
    ModeUnchanged,
    NicknameTaken,
    NoSuchMember,
    NoSuchRoom,
    NoSuchUser,
    NotBanned,
    NotInRoom,
    NotOperator,
    NotVoiced,
    OperatorRequired,
)
from chatroute.core.events import DirectMessage, Event, RoomMessage
from chatroute.core.interfaces import IBackplane, IParticipant
from chatroute.core.router import Router
from chatroute.core.session import Outbox
from chatroute.storage import name_key

SCRIPT = files("chatroute.backplane").joinpath("backplane.lua").read_text()
PREFIX = "chatroute:"
LEASE = 10.0
"""Seconds a node's nicknames are held without a renewal: a dead node's are free after this."""
BEAT = 2.5
"""
Seconds between a node's renewals of its lease; each also takes the users of
dead nodes off the network. A dead node's users are gone from C{/who} at most
L{LEASE} + L{BEAT} seconds after its last renewal.
"""
FORWARD_BATCH = 500
"""The most direct messages published to another node in one Redis message."""
MAILBOX_LEASE = 10.0
"""Seconds one node may hold the right to deliver an account's kept messages."""
_MAILBOX_POLL = 0.05

log = Logger()


@implementer(IParticipant)
class RemoteParticipant:
    """
    A user of another node, as the router here sees them: direct messages
    go to their node's inbox; everything else their own node delivers.
    """

    __slots__ = ("_backplane", "node", "presence")

    def __init__(self, backplane: "RedisBackplane", node: str) -> None:
        self._backplane = backplane
        self.node = node
        self.presence: Presence | None = None

    def deliver(self, event: Event) -> None:
        if type(event) is DirectMessage and self.presence is not None:
            self._backplane.forward(self.node, self.presence, event)

    def reply_error(self, error: ChatError) -> None:
        """Their node answers their requests."""

    def close(self, reason: str) -> None:
        """Their node closes their connection."""


@implementer(IParticipant)
class _Departed:
    """
    Stands in for a local participant that is gone, until the network has
    let it go (its name is still held for a Redis round trip): a direct
    message to it meanwhile is kept as for an offline account, as it would
    be on a lone node, rather than written to a closed connection.
    """

    __slots__ = ("_backplane", "_nick")

    def __init__(self, backplane: "RedisBackplane", nick: str | None) -> None:
        self._backplane = backplane
        self._nick = nick

    def deliver(self, event: Event) -> None:
        if type(event) is DirectMessage and self._nick is not None:
            self._backplane.not_received(self._nick, event)

    def reply_error(self, error: ChatError) -> None:
        pass

    def close(self, reason: str) -> None:
        pass


def _refusal(reply: dict[str, Any], context: dict[str, str]) -> ChatError:
    """The error a refused change stands for; C{context} names what was asked."""
    code = reply["error"]
    room = reply.get("room") or context.get("room", "?")
    nick = reply.get("nick") or context.get("nick", "?")
    refusals: dict[str, Callable[[], ChatError]] = {
        "taken": lambda: NicknameTaken(nick),
        "in_room": lambda: AlreadyInRoom(room),
        "banned": lambda: BannedFromRoom(room),
        "no_room": lambda: NoSuchRoom(room),
        "not_in_room": lambda: NotInRoom(room),
        "not_operator": lambda: OperatorRequired(room),
        "no_user": lambda: NoSuchUser(nick),
        "no_member": lambda: NoSuchMember(room, nick),
        "already_operator": lambda: AlreadyOperator(room, nick),
        "not_an_operator": lambda: NotOperator(room, nick),
        "already_banned": lambda: AlreadyBanned(room, nick),
        "not_banned": lambda: NotBanned(room, nick),
        "already_voiced": lambda: AlreadyVoiced(room, nick),
        "not_voiced": lambda: NotVoiced(room, nick),
        "mode_unchanged": lambda: ModeUnchanged(
            room, reply.get("mode") or context["mode"], bool(reply.get("on"))
        ),
    }
    make = refusals.get(code)
    if make is None:
        log.warn("the backplane refused a change: {code}", code=code)
        return BackplaneUnavailable()
    return make()


@implementer(IBackplane)
class RedisBackplane(Service):
    """
    This node's part of a network of chatroute nodes that share one Redis.

    @ivar directory: the network's users and rooms, as this node knows them.
    @ivar node: this node's id, new for each process.
    @ivar synced: whether this node's copy is up to date and changes can be made.
    @ivar outbox: the sessions' outbox, if they have one: what a batch of
        direct messages from another node brings one client is written to
        it in one write, as for a chunk read from a client.
    """

    def __init__(
        self,
        reactor: Any,
        address: RedisAddress,
        prefix: str = PREFIX,
        lease: float = LEASE,
        beat: float = BEAT,
        links: tuple[RedisLink, RedisLink] | None = None,
    ) -> None:
        """
        @param links: the commands and the events (subscriber) links to
            use; by default new ones to C{address} (tests give fakes).
        """
        self.directory = LocalDirectory()
        self.node = uuid4().hex[:12]
        self.synced = False
        self._reactor = reactor
        self._prefix = prefix
        self._lease = lease
        self._events_channel = prefix + "events"
        self._inbox = f"{prefix}node:{self.node}"
        self._commands, self._events = links or (
            RedisLink(reactor, address, "redis commands"),
            RedisLink(reactor, address, "redis events", subscriber=True),
        )
        for link in (self._commands, self._events):
            link.on_ready = self._link_up
            link.on_down = self._link_down
        self._events.on_message = self._message
        self._router: Router | None = None
        self._count = 0
        self._sids: dict[Presence, str] = {}
        self._local: dict[str, Presence] = {}
        self._remote: dict[str, Presence] = {}
        self._claiming: dict[str, str] = {}
        self._seq = 0
        self._buffer: list[dict[str, Any]] | None = None
        self._waiters: list[tuple[int, Deferred[None]]] = []
        self._getting_in_step: list[Deferred[None]] = []
        self._syncing = False
        self._sync_again = False
        self.outbox: Outbox | None = None
        self._outgoing: dict[str, DirectBatch] = {}
        self._flushing: IDelayedCall | None = None
        self._beat = LoopingCall(self._heartbeat)
        self._beat.clock = reactor
        self._beat_interval = beat

    @property
    def links(self) -> dict[str, RedisLink]:
        """The connections to Redis, by what they carry: C{commands} and C{events}."""
        return {"commands": self._commands, "events": self._events}

    # The service.

    def startService(self) -> None:
        """Connect to Redis; the node takes part once both links are up and it is in sync."""
        super().startService()
        log.info(
            "backplane: node {node} joining through {address}",
            node=self.node,
            address=self._commands.address,
        )
        self._commands.start()
        self._events.start()
        self._beat.start(self._beat_interval, now=False).addErrback(
            lambda failure: log.failure("backplane: the heartbeat stopped", failure)
        )

    def stopService(self) -> Deferred[None]:
        """Leave the network (this node's users leave their rooms), then close the links."""
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        super().stopService()
        if self._beat.running:
            self._beat.stop()
        self.synced = False
        self._send_forwards()
        if self._commands.ready:
            try:
                await self._commands.eval(SCRIPT, [], [self._prefix, "bye", self.node])
            except Exception:
                log.failure("backplane: leaving the network failed")
        await self._commands.stop()
        await self._events.stop()

    # IBackplane.

    def attach(self, router: Router) -> None:
        """The router that applies the network's changes here."""
        self._router = router

    def claim(self, presence: Presence, nick: str, account: bool, takeover: bool) -> Deferred[None]:
        """Claim C{nick} for the participant across the network (L{IBackplane.claim})."""
        return Deferred.fromCoroutine(self._claim(presence, nick, account, takeover))

    async def _claim(self, presence: Presence, nick: str, account: bool, takeover: bool) -> None:
        sid = self._sid(presence)
        key = name_key(nick)
        old = "" if presence.nick is None else name_key(presence.nick)
        self._claiming[sid] = key
        try:
            await self._change(
                {"nick": nick},
                "claim",
                self.node,
                sid,
                key,
                nick,
                int(account),
                int(takeover),
                old,
                presence.user or "",
                presence.real_name or "",
            )
        finally:
            self._claiming.pop(sid, None)
        if presence.nick != nick:  # the copy was read afresh meanwhile, without it
            raise BackplaneUnavailable()

    def release(self, presence: Presence, reason: str | None) -> None:
        """The participant disconnected: let the network know (fire and forget)."""
        sid = self._sids.get(presence)
        if sid is None:
            return
        presence.participant = _Departed(self, presence.nick)
        key = self._claiming.get(sid) or (
            None if presence.nick is None else name_key(presence.nick)
        )
        if key is None:
            self._forget(presence)
            return
        self._fire("gone", key, sid, reason or "")

    def not_received(self, to: str, message: DirectMessage) -> None:
        """C{to} left before C{message} reached them: keep it as for an offline account."""
        if self._router is not None:
            self._router.keep_undelivered(message.sender, to, message)

    def set_away(self, presence: Presence, message: str | None) -> Deferred[None]:
        return self._request({}, "away", self._key(presence), self._sid(presence), message or "")

    def mark_account(self, presence: Presence) -> Deferred[None]:
        return self._request({}, "account", self._key(presence), self._sid(presence))

    def join(self, presence: Presence, room: str, at: float) -> Deferred[None]:
        return self._request(
            {"room": room}, "join", self._key(presence), name_key(room), room, repr(at)
        )

    def leave(self, presence: Presence, room: str, reason: str | None) -> Deferred[None]:
        return self._request(
            {"room": room}, "leave", self._key(presence), name_key(room), reason or ""
        )

    def say(self, presence: Presence, message: RoomMessage) -> Deferred[None]:
        return self._request(
            {"room": message.room},
            "say",
            message.room,
            message.sender,
            message.text,
            int(message.action),
            int(message.notice),
        )

    def set_topic(
        self, presence: Presence, room: str, topic: str | None, at: float
    ) -> Deferred[None]:
        return self._request(
            {"room": room}, "topic", self._key(presence), name_key(room), topic or "", repr(at)
        )

    def set_operator(
        self, presence: Presence, room: str, nick: str, operator: bool
    ) -> Deferred[None]:
        return self._request(
            {"room": room, "nick": nick},
            "operator",
            self._key(presence),
            name_key(room),
            name_key(nick),
            int(operator),
        )

    def set_voice(self, presence: Presence, room: str, nick: str, voiced: bool) -> Deferred[None]:
        return self._request(
            {"room": room, "nick": nick},
            "voice",
            self._key(presence),
            name_key(room),
            name_key(nick),
            int(voiced),
        )

    def set_room_mode(self, presence: Presence, room: str, mode: str, on: bool) -> Deferred[None]:
        return self._request(
            {"room": room, "mode": mode},
            "mode",
            self._key(presence),
            name_key(room),
            mode,
            int(on),
        )

    def kick(self, presence: Presence, room: str, nick: str, reason: str | None) -> Deferred[None]:
        return self._request(
            {"room": room, "nick": nick},
            "kick",
            self._key(presence),
            name_key(room),
            name_key(nick),
            reason or "",
        )

    def set_ban(self, presence: Presence, room: str, nick: str, banned: bool) -> Deferred[None]:
        return self._request(
            {"room": room, "nick": nick},
            "ban",
            self._key(presence),
            name_key(room),
            name_key(nick),
            nick,
            int(banned),
        )

    def lock_mailbox(self, name: str) -> Deferred[str]:
        return Deferred.fromCoroutine(self._lock_mailbox(name))

    async def _lock_mailbox(self, name: str) -> str:
        token = uuid4().hex
        deadline = self._reactor.seconds() + MAILBOX_LEASE + _MAILBOX_POLL * 20
        while True:
            reply = await self._eval("lock", name_key(name), token, str(int(MAILBOX_LEASE * 1000)))
            if "error" not in reply:
                return token
            if self._reactor.seconds() > deadline:
                raise BackplaneUnavailable()
            await deferLater(self._reactor, _MAILBOX_POLL, lambda: None)

    def unlock_mailbox(self, name: str, token: str) -> None:
        self._fire("unlock", name_key(name), token)

    # Direct messages between nodes.

    def forward(self, node: str, recipient: Presence, message: DirectMessage) -> None:
        """
        Send a direct message from a user here to C{recipient} on C{node}:
        with the others of this reactor turn to that node, in one message.
        If no node receives it, the router keeps it as for an offline account.
        """
        batch = self._outgoing.get(node)
        if batch is None:
            batch = self._outgoing[node] = DirectBatch()
            if self._flushing is None:
                self._flushing = self._reactor.callLater(0, self._send_forwards)
        batch.add(recipient.nick or "?", message)
        if batch.count >= FORWARD_BATCH:
            self._publish(node, self._outgoing.pop(node))

    def _send_forwards(self) -> None:
        """Publish the direct messages waiting for other nodes, one message per node."""
        flushing, self._flushing = self._flushing, None
        if flushing is not None and flushing.active():
            flushing.cancel()
        outgoing, self._outgoing = self._outgoing, {}
        for node, batch in outgoing.items():
            self._publish(node, batch)

    def _publish(self, node: str, batch: DirectBatch) -> None:
        try:
            published = self._commands.execute(
                "PUBLISH", f"{self._prefix}node:{node}", batch.encode()
            )
        except RedisUnavailable:
            for _, message in batch.messages():
                self._not_delivered(message.sender)
            return
        published.addCallback(self._forwarded, batch)
        published.addErrback(self._forward_failed, batch)

    def _forwarded(self, receivers: int, batch: DirectBatch) -> None:
        if int(receivers) == 0 and self._router is not None:
            for to, message in batch.messages():
                log.info("backplane: the node of {to} is gone; keeping the message", to=to)
                self._router.keep_undelivered(message.sender, to, message)

    def _forward_failed(self, failure: Failure, batch: DirectBatch) -> None:
        log.info(
            "backplane: {count} direct messages not sent: {why}",
            count=batch.count,
            why=failure.getErrorMessage(),
        )
        for _, message in batch.messages():
            self._not_delivered(message.sender)

    def _not_delivered(self, sender: str) -> None:
        presence = self.directory.holder(sender)
        if presence is not None and self._router is not None and presence in self._sids:
            self._router.not_delivered(presence, BackplaneUnavailable())

    def _inbox_message(self, raw: str) -> None:
        """Direct messages from another node for users here: each client's in one write."""
        try:
            runs = decode(raw)
        except ValueError as error:
            log.warn("backplane: an unreadable batch of direct messages: {error}", error=error)
            return
        outbox = self.outbox
        collect = outbox is not None and not outbox.collecting
        if outbox is not None and collect:
            outbox.collecting = True
        try:
            holder, here = self.directory.holder, self._sids
            for to, sender, action, notice, texts in runs:
                presence = holder(to)
                if presence is None or presence not in here:
                    log.info("backplane: direct messages for {to}, gone from here, dropped", to=to)
                    continue
                deliver = presence.participant.deliver
                for text in texts:
                    deliver(DirectMessage(sender, text, action, notice))
        finally:
            if outbox is not None and collect:
                outbox.flush()

    # Changes: sent to Redis, applied here when their event comes back.

    def _request(self, context: dict[str, str], op: str, *arguments: Any) -> Deferred[None]:
        return Deferred.fromCoroutine(self._change(context, op, *arguments))

    async def _change(self, context: dict[str, str], op: str, *arguments: Any) -> None:
        """
        Run C{op}; return once its event has been applied here, or raise its
        refusal. While the node gets in step with both links up, C{op} waits
        for it; only a node cut off from Redis refuses at once.
        """
        if not self.synced:
            await self._in_step()
        reply = await self._eval(op, *arguments)
        if "error" in reply:
            raise _refusal(reply, context)
        await self._applied(int(reply["seq"]))

    async def _eval(self, op: str, *arguments: Any) -> dict[str, Any]:
        if self._outgoing:
            self._send_forwards()
        try:
            raw = await self._commands.eval(SCRIPT, [], [self._prefix, op, *arguments])
        except (RedisUnavailable, txredisapi.ConnectionError):
            raise BackplaneUnavailable() from None
        reply: dict[str, Any] = json.loads(raw)
        return reply

    def _fire(self, op: str, *arguments: Any) -> None:
        """Run C{op} without waiting; a failure is logged (the lease cleans up after us)."""
        if self._outgoing:
            self._send_forwards()
        try:
            sent = self._commands.eval(SCRIPT, [], [self._prefix, op, *arguments])
        except RedisUnavailable:
            return
        sent.addErrback(
            lambda failure: log.info(
                "backplane: {op} not done: {why}", op=op, why=failure.getErrorMessage()
            )
        )

    def _in_step(self) -> Deferred[None]:
        """
        Deferred firing once the node is in step, if it is getting in step
        now with both links up; failing with L{BackplaneUnavailable} at once
        if not, or once a link is lost or getting in step gave up.
        """
        if not (self._syncing and self._commands.ready and self._events.ready):
            return fail(BackplaneUnavailable())
        waiting: Deferred[None] = Deferred()
        self._getting_in_step.append(waiting)
        return waiting

    def _done_getting_in_step(self) -> None:
        """Let the changes waiting for L{_in_step} go on: in step, or refused if not."""
        waiting, self._getting_in_step = self._getting_in_step, []
        for each in waiting:
            if self.synced:
                each.callback(None)
            else:
                each.errback(BackplaneUnavailable())

    def _applied(self, seq: int) -> Deferred[None]:
        if self.synced and self._seq >= seq:
            return succeed(None)
        waiting: Deferred[None] = Deferred()
        self._waiters.append((seq, waiting))
        return waiting

    def _wake(self, everyone: bool = False) -> None:
        waiters, self._waiters = self._waiters, []
        for seq, waiting in waiters:
            if everyone or seq <= self._seq:
                waiting.callback(None)
            else:
                self._waiters.append((seq, waiting))

    def _fail_waiters(self) -> None:
        waiters, self._waiters = self._waiters, []
        for _, waiting in waiters:
            waiting.errback(BackplaneUnavailable())

    def _sid(self, presence: Presence) -> str:
        sid = self._sids.get(presence)
        if sid is None:
            self._count += 1
            sid = self._sids[presence] = f"{self.node}.{self._count}"
            self._local[sid] = presence
        return sid

    def _key(self, presence: Presence) -> str:
        return name_key(presence.nick or "")

    def _forget(self, presence: Presence) -> None:
        sid = self._sids.pop(presence, None)
        if sid is not None:
            self._local.pop(sid, None)

    # Events from Redis.

    def _message(self, channel: str, raw: Any) -> None:
        if channel == self._inbox and isinstance(raw, str):
            self._inbox_message(raw)
            return
        try:
            message = json.loads(raw)
        except (TypeError, ValueError):
            log.warn("backplane: an unreadable message on {channel}", channel=channel)
            return
        if channel == self._inbox:
            log.warn("backplane: an unreadable message in this node's inbox")
        elif self._buffer is not None:
            self._buffer.append(message)
        elif self.synced:
            self._apply(message)

    def _apply(self, event: dict[str, Any]) -> None:
        seq = int(event["seq"])
        if seq <= self._seq:
            return
        if seq != self._seq + 1:
            log.warn(
                "backplane: events {first} to {last} missed; reading the state afresh",
                first=self._seq + 1,
                last=seq - 1,
            )
            self._start_sync()
            return
        self._seq = seq
        try:
            self._APPLY[event["op"]](self, event)
        except Exception:
            log.failure("backplane: applying event {seq} failed; reading the state afresh", seq=seq)
            self._start_sync()
        self._wake()

    def _on_claim(self, event: dict[str, Any]) -> None:
        assert self._router is not None
        sid, nick = event["sid"], event["nick"]
        if event["node"] == self.node:
            presence = self._local.get(sid)
            if presence is None or isinstance(presence.participant, _Departed):
                return
        else:
            presence = self._remote.get(sid) or self._remote_presence(event["node"], sid)
            presence.user = event.get("user") or None
            presence.real_name = event.get("real_name") or None
        self._router.apply_claim(presence, nick, bool(event["account"]))

    def _remote_presence(self, node: str, sid: str) -> Presence:
        participant = RemoteParticipant(self, node)
        presence = participant.presence = self._remote[sid] = Presence(participant, node)
        return presence

    def _by_sid(self, sid: str) -> Presence | None:
        return self._local.get(sid) or self._remote.get(sid)

    def _on_gone(self, event: dict[str, Any]) -> None:
        assert self._router is not None
        sid = event["sid"]
        presence = self._by_sid(sid)
        if presence is None:
            return
        self._router.apply_gone(presence, event.get("reason"), bool(event.get("replaced")))
        self._remote.pop(sid, None)
        self._forget(presence)

    def _member(self, key: str) -> Presence:
        presence = self.directory.holder(key)
        if presence is None:
            raise LookupError(f"no user {key} here")
        return presence

    def _room_named(self, name: str) -> Room:
        room = self.directory.room(name)
        if room is None:
            raise LookupError(f"no room {name} here")
        return room

    def _on_account(self, event: dict[str, Any]) -> None:
        assert self._router is not None
        self._router.apply_account(self._member(event["key"]))

    def _on_away(self, event: dict[str, Any]) -> None:
        assert self._router is not None
        self._router.apply_away(self._member(event["key"]), event.get("message"))

    def _on_join(self, event: dict[str, Any]) -> None:
        assert self._router is not None
        self._router.apply_join(
            self._member(event["key"]),
            event["room"],
            bool(event["creator"]),
            event.get("created_at"),
        )

    def _on_leave(self, event: dict[str, Any]) -> None:
        assert self._router is not None
        self._router.apply_leave(
            self._member(event["key"]), self._room_named(event["room"]), event.get("reason")
        )

    def _on_say(self, event: dict[str, Any]) -> None:
        assert self._router is not None
        self._router.apply_say(
            event["room"],
            RoomMessage(
                event["room"], event["nick"], event["text"], event["action"], event["notice"]
            ),
        )

    def _on_topic(self, event: dict[str, Any]) -> None:
        assert self._router is not None
        by = self._member(event["key"]).nick or "?"
        self._router.apply_topic(
            self._room_named(event["room"]), by, event.get("topic"), event.get("at") or 0.0
        )

    def _on_operator(self, event: dict[str, Any]) -> None:
        assert self._router is not None
        room = self._room_named(event["room"])
        member = self._member(event["target"]).nick or "?"
        by = self._member(event["key"]).nick or "?"
        self._router.apply_operator(room, member, by, bool(event["on"]))

    def _on_voice(self, event: dict[str, Any]) -> None:
        assert self._router is not None
        room = self._room_named(event["room"])
        member = self._member(event["target"]).nick or "?"
        by = self._member(event["key"]).nick or "?"
        self._router.apply_voice(room, member, by, bool(event["on"]))

    def _on_mode(self, event: dict[str, Any]) -> None:
        assert self._router is not None
        room = self._room_named(event["room"])
        by = self._member(event["key"]).nick or "?"
        self._router.apply_room_mode(room, by, event["mode"], bool(event["on"]))

    def _on_kick(self, event: dict[str, Any]) -> None:
        assert self._router is not None
        room = self._room_named(event["room"])
        by = self._member(event["key"]).nick or "?"
        self._router.apply_kick(room, self._member(event["target"]), by, event.get("reason"))

    def _on_ban(self, event: dict[str, Any]) -> None:
        assert self._router is not None
        room = self._room_named(event["room"])
        by = self._member(event["key"]).nick or "?"
        self._router.apply_ban(room, event["shown"], by, bool(event["on"]))

    def _on_resync(self, event: dict[str, Any]) -> None:
        """
        A node asserted its users and their rooms again (C{restore}): take
        what it wrote, in its place among the events. An event without it
        (from an older node) leaves nothing to do but read the state afresh.
        """
        users, rooms = event.get("users"), event.get("rooms")
        if not isinstance(users, dict) or not isinstance(rooms, dict):
            self._start_sync()
            return
        for user in users.values():
            if user["node"] != self.node:  # this node's own are in its copy already
                self._hold(self._remote_user(user, self._remote), user)
        for shared in rooms.values():
            self._take_room(shared)
        log.info(
            "backplane: another node asserted {users} users and {rooms} rooms again; taken in turn",
            users=len(users),
            rooms=len(rooms),
        )

    _APPLY: ClassVar[dict[str, Callable[["RedisBackplane", dict[str, Any]], None]]] = {
        "claim": _on_claim,
        "gone": _on_gone,
        "account": _on_account,
        "away": _on_away,
        "join": _on_join,
        "leave": _on_leave,
        "say": _on_say,
        "topic": _on_topic,
        "operator": _on_operator,
        "voice": _on_voice,
        "mode": _on_mode,
        "kick": _on_kick,
        "ban": _on_ban,
        "resync": _on_resync,
    }

    # Keeping the copy in step: on every new connection, and when in doubt.

    def _link_up(self) -> None:
        if self._commands.ready and self._events.ready:
            self._start_sync()

    def _link_down(self) -> None:
        if self.synced:
            log.warn("backplane: cut off from Redis; changes are refused until it is back")
        self.synced = False
        self._buffer = None
        self._fail_waiters()
        self._done_getting_in_step()

    def _start_sync(self) -> None:
        if self._syncing:
            self._sync_again = True
            return
        self._syncing = True
        self.synced = False
        Deferred.fromCoroutine(self._sync()).addErrback(
            lambda failure: log.failure("backplane: getting in step failed", failure)
        )

    async def _sync(self) -> None:
        try:
            while True:
                self._sync_again = False
                if not (self._commands.ready and self._events.ready):
                    return
                try:
                    await self._sync_once()
                except (BackplaneUnavailable, RedisUnavailable, txredisapi.ConnectionError):
                    log.info("backplane: Redis went away while getting in step; waiting for it")
                    return
                if not self._sync_again:
                    return
        finally:
            self._syncing = False
            self._done_getting_in_step()

    async def _sync_once(self) -> None:
        self._buffer = []
        await self._events.subscribe(self._events_channel, self._inbox)
        await self._eval("beat", self.node, str(int(self._lease * 1000)))
        restored = await self._eval("restore", self.node, json.dumps(self._restoration()))
        snapshot = await self._eval("snapshot")
        lost = set(restored.get("lost", []))
        self._rebuild(snapshot, lost)
        buffered, self._buffer = self._buffer or [], None
        self.synced = True
        in_snapshot = self._seq
        for event in buffered:
            if int(event["seq"]) <= in_snapshot:
                self._deliver_folded(event)
            else:
                self._apply(event)
        self._wake(everyone=True)
        self._done_getting_in_step()
        log.info(
            "backplane: node {node} in step at event {seq}: {users} users, {rooms} rooms",
            node=self.node,
            seq=self._seq,
            users=sum(1 for _ in self.directory.online()),
            rooms=sum(1 for _ in self.directory.rooms()),
        )

    def _deliver_folded(self, event: dict[str, Any]) -> None:
        """
        An event that came while getting in step, already in the snapshot:
        what it changed is in the copy, but a room message changes nothing
        and would never reach the members here: deliver it now, in order.
        """
        if event.get("op") != "say":
            return
        try:
            self._on_say(event)
        except Exception:
            log.failure("backplane: delivering event {seq} failed", seq=event.get("seq"))

    def _restoration(self) -> list[dict[str, Any]]:
        """What this node's users hold, to assert again in Redis."""
        entries = []
        for sid, presence in self._local.items():
            if presence.nick is None or isinstance(presence.participant, _Departed):
                continue
            key = name_key(presence.nick)
            user = {
                "nick": presence.nick,
                "node": self.node,
                "sid": sid,
                "account": presence.account,
                "user": presence.user or "",
                "real_name": presence.real_name or "",
                "away": presence.away,
                "rooms": {},
            }
            rooms = {
                room_key: {
                    "name": room.name,
                    "topic": room.topic,
                    "topic_by": room.topic_by,
                    "topic_at": room.topic_at,
                    "created_at": room.created_at,
                    "members": {},
                    "ops": {key: True} if key in room.operators else {},
                    "voiced": {key: True} if key in room.voiced else {},
                    "bans": dict(room.bans),
                    "modes": dict.fromkeys(room.modes, True),
                }
                for room_key, room in presence.rooms.items()
            }
            entries.append({"key": key, "user": user, "rooms": rooms})
        return entries

    def _rebuild(self, snapshot: dict[str, Any], lost: set[str]) -> None:
        """Make the copy the snapshot; close the local users who lost their names."""
        assert self._router is not None
        directory = self.directory
        for presence in list(directory.online()):
            directory.release(presence.nick or "")
        for room in list(directory.rooms()):
            directory.close_room(room.name)
        previous_remote, self._remote = self._remote, {}
        held: set[str] = set()
        stale: list[tuple[str, str]] = []
        for raw in snapshot["users"]:
            user = json.loads(raw)
            sid = user["sid"]
            if user["node"] == self.node:
                found = self._local.get(sid)
                if found is None or isinstance(found.participant, _Departed):
                    stale.append((name_key(user["nick"]), sid))
                    continue
                held.add(sid)
            else:
                found = self._remote_user(user, previous_remote)
            found.rooms = {}
            self._hold(found, user)
        for raw in snapshot["rooms"]:
            self._take_room(json.loads(raw))
        self._seq = int(snapshot["seq"])
        for key, sid in stale:
            self._fire("gone", key, sid, "")
        for sid, presence in list(self._local.items()):
            if sid in held or presence.nick is None:
                continue
            participant = presence.participant
            presence.nick, presence.rooms, presence.account = None, {}, False
            if isinstance(participant, _Departed):
                self._forget(presence)
                continue
            log.warn(
                "backplane: a local user lost their nickname while cut off ({lost})",
                lost=", ".join(sorted(lost)) or "gone from Redis",
            )
            self._router.disconnect(presence)
            participant.close("your nickname was taken while this server was cut off")

    def _remote_user(self, user: dict[str, Any], known: dict[str, Presence]) -> Presence:
        """The presence here of C{user} (a record from Redis) of another node, with its names."""
        sid = user["sid"]
        presence = known.get(sid) or self._remote_presence(user["node"], sid)
        self._remote[sid] = presence
        presence.user = user.get("user") or None
        presence.real_name = user.get("real_name") or None
        return presence

    def _hold(self, presence: Presence, user: dict[str, Any]) -> None:
        """
        C{presence} is C{user} (a record from Redis), holding its nickname here.

        @raise LookupError: someone else holds that nickname here: the copy is
            not what Redis had before this (read it afresh).
        """
        directory = self.directory
        nick = user["nick"]
        holder = directory.holder(nick)
        if holder is not None and holder is not presence:
            raise LookupError(f"{nick} is held by someone else here")
        if presence.nick is not None and directory.holder(presence.nick) is presence:
            directory.release(presence.nick)
        presence.nick = nick
        presence.account = bool(user["account"])
        presence.away = user.get("away")
        directory.claim(presence, nick)

    def _take_room(self, shared: dict[str, Any]) -> None:
        """Make the room of C{shared} (a record from Redis) here what it is there, whole."""
        directory = self.directory
        room = directory.room(shared["name"]) or directory.open_room(shared["name"])
        room_key = name_key(room.name)
        for former in room.members.values():
            former.rooms.pop(room_key, None)
        room.members = {}
        room.topic = shared.get("topic")
        room.topic_by = shared.get("topic_by")
        room.topic_at = shared.get("topic_at")
        room.created_at = shared.get("created_at") or 0.0
        room.bans = dict(shared.get("bans") or {})
        modes = shared.get("modes")
        room.modes = {TOPIC_LOCK} if modes is None else set(modes or ())
        for key in shared.get("members") or {}:
            member = directory.holder(key)
            if member is not None:
                room.members[key] = member
                member.rooms[room_key] = room
        room.operators = {key for key in shared.get("ops") or {} if key in room.members}
        room.voiced = {key for key in shared.get("voiced") or {} if key in room.members}

    def _heartbeat(self) -> Deferred[None] | None:
        if not self.synced:
            return None
        return Deferred.fromCoroutine(self._renew())

    async def _renew(self) -> None:
        try:
            reply = await self._eval("beat", self.node, str(int(self._lease * 1000)))
        except BackplaneUnavailable:
            return
        except Exception:
            log.failure("backplane: renewing the lease failed")
            return
        if not reply.get("alive"):
            log.warn("backplane: this node's lease had run out; asserting its users again")
            self._start_sync()
