"""
The WebSocket front end of the real server, spoken to in raw frames, beside
line-protocol users on TCP: one chat, the same errors, the same limits.
"""

import re
import ssl
import urllib.request

import pytest

from .support import WEB_STARTED, ServerProcess, make_certificate
from .websocket import BINARY, TEXT, Refused, WebSocket

pytestmark = [
    pytest.mark.integration,
    pytest.mark.server_options("--listen-web", "tcp:0:interface=127.0.0.1"),
]

GREETING_START = "* connected from 127.0.0.1:"
WEB_TLS_STARTED = re.compile(r"ChatWebSite \(TLS\) starting on (\d+)")


def web_port(server: ServerProcess) -> int:
    return int(server.wait_for_log(WEB_STARTED)[0].group(1))


@pytest.fixture
def websocket(server):
    opened: list[WebSocket] = []

    def open_websocket(origin: str | None = None) -> WebSocket:
        socket = WebSocket(web_port(server), origin)
        opened.append(socket)
        greeting = socket.receive()
        assert greeting.startswith(GREETING_START), greeting
        return socket

    yield open_websocket
    for socket in opened:
        socket.close()


def register(socket: WebSocket, nick: str) -> None:
    socket.send(f"#{nick}")
    socket.expect(f"* registered as {nick}")


def test_a_websocket_user_and_a_tcp_user_share_rooms_and_direct_messages(connect, websocket):
    web = websocket()
    register(web, "wanda")
    tom = connect("tom")
    tom.register("tom")

    web.send("/join #lobby")
    web.expect("* wanda joined #lobby")
    web.expect("* #lobby (1): @wanda")
    tom.send("/join #lobby")
    web.expect("* tom joined #lobby")
    tom.expect("* tom joined #lobby")
    tom.expect("* #lobby (2): tom, @wanda")

    web.send("@#lobby:hello from the web")
    web.expect("#lobby <wanda> hello from the web")
    tom.expect("#lobby <wanda> hello from the web")
    tom.send("@wanda:and hello from tcp")
    web.expect("<tom> and hello from tcp")
    web.send("@tom:<b>x</b>")
    tom.expect("<wanda> <b>x</b>")


def test_bad_messages_get_the_errors_of_tcp_and_the_connection_stays(websocket):
    web = websocket()
    register(web, "wanda")

    web.send_frame(BINARY, b"@wanda:\xc3(")
    web.expect("! invalid UTF-8; line discarded")
    web.send_frame(TEXT, b"@wanda:\xff\xfe")
    web.expect("! invalid UTF-8; line discarded")
    web.send("@wanda:" + "x" * 5000)
    web.expect("! line too long (over 4096 bytes); discarded")
    web.send("@wanda:two\nlines")
    web.expect("! control characters are not allowed; line discarded")
    web.send("nonsense")
    web.expect("! unrecognised line: start with #name, @name:, @#room: or / (try /help)")
    web.send_frame(BINARY, b"@wanda:binary is a line too")
    web.expect("<wanda> binary is a line too")
    web.send("@wanda:still here\r\n")
    web.expect("<wanda> still here")


def test_a_huge_fragmented_message_is_discarded_as_it_comes(server, websocket):
    web = websocket()
    register(web, "wanda")
    rss_before = server_rss_kib(server)

    chunk = b"y" * 65536
    web.send_frame(TEXT, b"@wanda:" + chunk, fin=False)
    for _ in range(255):  # 16 MiB in all
        web.send_frame(0x0, chunk, fin=False)
    web.send_frame(0x0, chunk, fin=True)
    web.expect("! line too long (over 4096 bytes); discarded")
    web.send("@wanda:after")
    web.expect("<wanda> after")
    assert server_rss_kib(server) - rss_before < 8 * 1024, "the message was not kept"


def server_rss_kib(server: ServerProcess) -> int:
    with open(f"/proc/{server.process.pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_page_of_another_origin_is_refused(server, websocket):
    port = web_port(server)
    with pytest.raises(Refused, match="403"):
        WebSocket(port, origin="https://evil.example")
    websocket(origin=f"http://127.0.0.1:{port}")  # the chat's own page
    websocket()  # not a browser: no Origin at all


@pytest.mark.server_options(
    "--listen-web", "tcp:0:interface=127.0.0.1", "--web-origin", "https://chat.example.org"
)
def test_web_origin_allows_another_origin(websocket):
    websocket(origin="https://chat.example.org")


@pytest.mark.server_options("--listen-web", "tcp:0:interface=127.0.0.1", "--max-per-address", "2")
def test_the_connection_limits_count_every_front_end(server, connect, websocket):
    connect("tcp")
    websocket()
    extra = WebSocket(web_port(server))
    assert extra.receive() == "! too many connections from 127.0.0.1 (at most 2); closing"


def test_the_flood_limit_holds_and_names_the_lines(websocket):
    web = websocket()
    register(web, "wanda")
    for number in range(30):
        web.send(f"@wanda:{number}")
    answers = [web.receive() for _ in range(30)]
    refused = [answer for answer in answers if answer.startswith("! flood limit")]
    assert refused, answers
    assert refused[-1].endswith("; line discarded: @wanda:29"), refused


def test_the_page_is_served(server):
    port = web_port(server)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/html")


def test_a_websocket_logs_in_to_an_account_made_on_tcp(connect, websocket):
    tom = connect("tom")
    tom.register("tom")
    tom.send("/register tomspassword")
    tom.expect("* tom is now a registered account; log in with #tom <password>")
    tom.close()
    web = websocket()
    web.send("#tom tomspassword")
    web.expect("* logged in as tom")


def test_wss_on_a_tls_web_listener(tmp_path):
    """The page's WebSocket through TLS (wss://), with a certificate from chatroute-makecert."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    make_certificate(key, cert)
    directory = tmp_path / "server"
    directory.mkdir()
    listener = f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"
    server = ServerProcess(directory, "--listen-web", listener)
    try:
        port = int(server.wait_for_log(WEB_TLS_STARTED)[0].group(1))
        context = ssl.create_default_context(cafile=str(cert))
        web = WebSocket(port, tls=context)
        assert web.receive().startswith(GREETING_START)
        register(web, "wanda")
        web.send("@wanda:over wss")
        web.expect("<wanda> over wss")
        web.close()
    finally:
        assert server.stop() in (0, -15)
    assert "Traceback" not in server.log()


@pytest.mark.server_options("--listen-web", "tcp:0:interface=127.0.0.1", "--idle-timeout", "1")
def test_the_idle_timeout_holds_on_a_websocket(websocket):
    web = websocket()
    register(web, "wanda")
    assert web.receive() == "* nothing received for 1 s; closing"
    with pytest.raises(EOFError, match="closed by the server"):
        web.receive()
