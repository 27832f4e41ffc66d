"""
A WebSocket client that speaks raw frames (RFC 6455), to test the server's
WebSocket as any client, well-behaved or not, would use it.
"""

import base64
import os
import socket
import ssl
import struct

from .support import READ_TIMEOUT

TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA


class Refused(Exception):
    """The server answered the handshake with something other than 101."""


class WebSocket:
    """One WebSocket connection to C{ws://127.0.0.1:PORT/ws}, frame by frame."""

    def __init__(
        self,
        port: int,
        origin: str | None = None,
        path: str = "/ws",
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """
        Connect and do the opening handshake.

        @param tls: speak TLS with these settings (C{wss://}), for 127.0.0.1.
        @raise Refused: the server answered the handshake with another status.
        """
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT)
        if tls is not None:
            self.sock = tls.wrap_socket(self.sock, server_hostname="127.0.0.1")
        key = base64.b64encode(os.urandom(16)).decode()
        headers = [
            f"GET {path} HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        if origin is not None:
            headers.append(f"Origin: {origin}")
        self.sock.sendall(("\r\n".join(headers) + "\r\n\r\n").encode())
        self._data = b""
        while b"\r\n\r\n" not in self._data:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise Refused(self._data.decode(errors="replace"))
            self._data += chunk
        head, self._data = self._data.split(b"\r\n\r\n", 1)
        self.status = int(head.split()[1])
        if self.status != 101:
            raise Refused(head.decode(errors="replace"))

    def send_frame(self, opcode: int, payload: bytes, fin: bool = True) -> None:
        """Send one masked frame, as a client must."""
        mask = os.urandom(4)
        length = len(payload)
        if length < 126:
            header = struct.pack("!BB", (0x80 if fin else 0) | opcode, 0x80 | length)
        elif length < 1 << 16:
            header = struct.pack("!BBH", (0x80 if fin else 0) | opcode, 0x80 | 126, length)
        else:
            header = struct.pack("!BBQ", (0x80 if fin else 0) | opcode, 0x80 | 127, length)
        masked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def send(self, line: str) -> None:
        """Send one line as a text message."""
        self.send_frame(TEXT, line.encode())

    def _read(self, count: int) -> bytes:
        while len(self._data) < count:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(f"closed; had {self._data!r}")
            self._data += chunk
        taken, self._data = self._data[:count], self._data[count:]
        return taken

    def frame(self) -> tuple[int, bytes]:
        """The next frame from the server: its opcode and payload."""
        first, second = self._read(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._read(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._read(8))
        return first & 0x0F, self._read(length)

    def receive(self) -> str:
        """The next text message, answering pings on the way."""
        while True:
            opcode, payload = self.frame()
            if opcode == TEXT:
                return payload.decode()
            if opcode == PING:
                self.send_frame(PONG, payload)
            elif opcode == CLOSE:
                raise EOFError(f"closed by the server: {payload!r}")

    def expect(self, line: str) -> None:
        """The next text message must be C{line}."""
        got = self.receive()
        assert got == line, f"expected {line!r}, got {got!r}"

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()
