"""
The tutorial's chat server, ported to Python 3: the starting line of the bench.

This is the classic single-threaded C{select()} chat server that chatroute
grew from, kept as close to the original as Python 3 allows: one blocking
C{select.select()} loop over a list of blocking sockets, replies written
with blocking sends, a name table in a dict. The changes from the original
are the ones the bench needs to compare like with like:

  - Python 3: bytes on the wire, UTF-8 text inside.
  - C{select()} blocks until a socket is ready (the original polled with a
    zero timeout and so spun one core at 100% even when idle).
  - Lines are framed at newline instead of taking each C{recv()} as one
    message, so pipelined lines are not glued together.
  - C{#name} registers and C{@name:text} sends a direct message, delivered
    as C{<sender> text}; replies use chatroute's C{* ...}/C{! ...} forms.
    Any other line is broadcast to everyone else, as the original did.

Like the original it has no rooms, no flow control and no defence against a
client that stops reading: a blocking send to it stalls everyone. It also
cannot watch more than ~1,020 sockets, as C{select()} is limited to file
descriptors below 1024.

Run: C{python tutorial_server.py [--port PORT]}; port 0 picks a free port,
which is printed as C{listening on PORT}.
"""

import argparse
import select
import socket
import sys

HOST = "127.0.0.1"
RECV_BUFFER = 4096


def chat_server(port: int) -> None:
    """Serve the chat on C{HOST:port} until killed."""
    server_socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server_socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server_socket.bind((HOST, port))
    server_socket.listen(10)
    print(f"listening on {server_socket.getsockname()[1]}", flush=True)

    socket_list = [server_socket]
    names: dict[str, socket.socket] = {}
    name_of: dict[socket.socket, str] = {}
    pending: dict[socket.socket, bytes] = {}

    def send(sock: socket.socket, text: str) -> None:
        try:
            sock.sendall(text.encode() + b"\r\n")
        except OSError:
            drop(sock)

    def drop(sock: socket.socket) -> None:
        if sock in socket_list:
            socket_list.remove(sock)
        name = name_of.pop(sock, None)
        if name is not None:
            names.pop(name.lower(), None)
        pending.pop(sock, None)
        sock.close()

    def handle_line(sock: socket.socket, line: str) -> None:
        if line.startswith("#"):
            name = line[1:].strip()
            holder = names.get(name.lower())
            if not name or (holder is not None and holder is not sock):
                send(sock, f"! name not available: {name}")
                return
            old = name_of.get(sock)
            if old is not None:
                names.pop(old.lower(), None)
            names[name.lower()] = sock
            name_of[sock] = name
            send(sock, f"* registered as {name}")
        elif line.startswith("@"):
            to, _, text = line[1:].partition(":")
            sender = name_of.get(sock)
            if sender is None:
                send(sock, "! register first with #yourname")
                return
            target = names.get(to.strip().lower())
            if target is None:
                send(sock, f"! no such user: {to}")
                return
            send(target, f"<{sender}> {text.strip()}")
        elif line.strip():
            sender = name_of.get(sock, "?")
            for other in list(socket_list):
                if other is not server_socket and other is not sock:
                    send(other, f"[{sender}] {line}")

    while True:
        ready_to_read, _, _ = select.select(socket_list, [], [])
        for sock in ready_to_read:
            if sock is server_socket:
                conn, addr = server_socket.accept()
                socket_list.append(conn)
                send(conn, f"* connected from {addr[0]}:{addr[1]} - register with #yourname")
                continue
            if sock not in socket_list:
                continue  # dropped earlier in this round
            try:
                data = sock.recv(RECV_BUFFER)
            except OSError:
                data = b""
            if not data:
                drop(sock)
                continue
            lines = (pending.pop(sock, b"") + data).split(b"\n")
            if lines[-1]:
                pending[sock] = lines[-1]
            for raw in lines[:-1]:
                if sock not in socket_list:
                    break
                handle_line(sock, raw.rstrip(b"\r").decode(errors="replace"))


def main() -> None:
    """Parse the command line and serve."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--port", type=int, default=0)
    try:
        chat_server(parser.parse_args().port)
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
