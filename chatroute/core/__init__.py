"""
The chat itself, whatever the wire: users, rooms and delivery, accounts,
limits, and each connection's session. Nothing here knows a wire format, a
socket or SQL.
"""
