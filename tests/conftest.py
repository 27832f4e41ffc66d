"""Shared test helpers: a participant that records what the router delivers."""

from __future__ import annotations

import pytest
from zope.interface import implementer

from chatroute.events import Event
from chatroute.interfaces import IParticipant
from chatroute.router import Router, Session


@implementer(IParticipant)
class RecordingParticipant:
    """Keeps every delivered event, in order."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def deliver(self, event: Event) -> None:
        self.events.append(event)

    def take(self) -> list[Event]:
        """The events so far, forgetting them."""
        events, self.events = self.events, []
        return events


class Person:
    """A recording participant connected to a router, optionally registered."""

    def __init__(self, router: Router, nick: str | None = None) -> None:
        self.participant = RecordingParticipant()
        self.session: Session = router.connect(self.participant)
        if nick is not None:
            router.register(self.session, nick)
            self.participant.take()

    def take(self) -> list[Event]:
        return self.participant.take()


@pytest.fixture
def router() -> Router:
    return Router()
