"""The terminal client, C{chatroute-client}: it talks to the server only over the wire."""
