"""chatroute: a small, self-hostable chat server and terminal client on Twisted."""
