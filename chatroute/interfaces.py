"""The seams between the router and the front ends that connect people to it."""

from zope.interface import Interface

from chatroute.events import Event


class IParticipant(Interface):
    """
    One connected person as the router sees them: something events reach.

    The line protocol implements this; a WebSocket front end would too.
    """

    def deliver(event: Event) -> None:
        """
        Hand C{event} to the person. Must not block; may queue the event.
        """
