"""
The backplane: what joins several chatroute nodes into one chat.

L{chatroute.backplane.redis} keeps presence, nickname leases, rooms and
their members in Redis and carries room events and direct messages between
nodes; L{chatroute.backplane.connection} is its reconnecting link to Redis.
"""
