"""Makes C{twistd chatroute} available; the work is in L{chatroute.tap}."""

from twisted.application.service import ServiceMaker

chatroute = ServiceMaker(
    "chatroute", "chatroute.tap", "A chat server routing direct and room messages.", "chatroute"
)
