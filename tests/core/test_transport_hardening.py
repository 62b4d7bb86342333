"""The transport against servers that misbehave on purpose, on real loopback sockets.

No Vault can be made to trickle bytes, send a 2 MiB answer or redirect elsewhere on demand, so
small socket servers do it here (each serves one scripted connection and stops). The real
OpenBao cases (TLS proxies, Unix sockets, client certificates, redirects between real
listeners) are in test_transport.py.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import traceback
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from vaultdb._clock import SystemClock
from vaultdb._http import HTTPStatusError, RedirectRefusedError, TransportError, VaultHTTP
from vaultdb.errors import ConfigurationError

TOKEN = "hvs.HARDENING-SECRET-TOKEN"
SECRET_ID = "HARDENING-SECRET-ID"


class SteppingClock(SystemClock):
    """Each ``monotonic()`` moves 0.05 s on: a deadline comes after a fixed number of reads,
    however fast or slow the machine is (no wall-clock duration is asserted)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:  # type: ignore[override]
        self.now += 0.05
        return self.now


class OneShot:
    """A socket server that runs ``script(conn)`` for each connection, on its own thread."""

    def __init__(self, script: Callable[[socket.socket], None], host: str = "127.0.0.1") -> None:
        self.script = script
        self.connections = 0
        self.sent = 0
        self.server = socket.socket()
        self.server.bind((host, 0))
        self.server.listen(4)
        self.url = f"http://{host}:{self.server.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            # OSError: the client hung up, which is what the deadline tests want.
            with conn, contextlib.suppress(OSError):
                self.script(conn)

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def serve() -> Iterator[Callable[..., OneShot]]:
    servers: list[OneShot] = []

    def start(script: Callable[[socket.socket], None], host: str = "127.0.0.1") -> OneShot:
        servers.append(OneShot(script, host))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def read_request(conn: socket.socket) -> bytes:
    conn.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


# -- the whole-request deadline (issue 11 §3; shared/repro/r3_drip.py) ---------------------------

def drip(server: list[OneShot], where: str, count: int = 400) -> Callable[[socket.socket], None]:
    """Headers, or the body, one byte every 5 ms: each read gets a byte long before any socket
    timeout, so only a deadline over the whole request can stop it."""

    def script(conn: socket.socket) -> None:
        read_request(conn)
        if where == "headers":
            conn.sendall(b"HTTP/1.1 200 OK\r\nX-Pad: ")
            payload, tail = b"a" * count, b"\r\nContent-Length: 2\r\n\r\n{}"
        else:
            conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
            payload, tail = b" " * count, b"{}"
        for byte in payload:
            conn.sendall(bytes([byte]))
            server[0].sent += 1
            threading.Event().wait(0.005)
        conn.sendall(tail)

    return script


@pytest.mark.parametrize("where", ["headers", "body"])
def test_a_trickling_server_cannot_hold_a_request_past_its_deadline(
        serve: Callable[..., OneShot], where: str) -> None:
    holder: list[OneShot] = []
    holder.append(serve(drip(holder, where)))
    http = VaultHTTP(holder[0].url, timeout=1.0, clock=SteppingClock())
    with pytest.raises(TransportError) as info:
        http.request("GET", "sys/health")
    assert (info.value.kind, info.value.sent) == ("timeout", True)
    assert holder[0].sent < 400  # the call gave up; it did not sit through the trickle


def test_a_trickling_tls_handshake_cannot_hold_a_request_past_its_deadline(
        serve: Callable[..., OneShot]) -> None:
    """The server's "handshake" is a TLS record header announcing 16 KiB, then one byte every
    5 ms: the TLS layer keeps waiting for the rest, and only the deadline ends the wait."""
    holder: list[OneShot] = []

    def script(conn: socket.socket) -> None:
        conn.settimeout(5)
        conn.recv(65536)  # the ClientHello
        conn.sendall(b"\x16\x03\x03\x40\x00")
        for _ in range(400):
            conn.sendall(b"\x00")
            holder[0].sent += 1
            threading.Event().wait(0.005)

    holder.append(serve(script))
    http = VaultHTTP(holder[0].url.replace("http://", "https://"), timeout=1.0,
                     clock=SteppingClock())
    with pytest.raises(TransportError) as info:
        http.request("GET", "sys/health")
    assert info.value.sent is False
    assert holder[0].sent < 400


def test_an_answer_over_the_size_limit_is_refused(serve: Callable[..., OneShot]) -> None:
    size = 2 << 20

    def big(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        conn.sendall(b"x" * size)

    server = serve(big)
    with pytest.raises(TransportError) as info:
        VaultHTTP(server.url, timeout=10).request("GET", "sys/health")
    assert (info.value.kind, info.value.sent) == ("protocol", True)
    assert "1048576 bytes" in str(info.value)
    small = serve(big)
    with pytest.raises(TransportError):
        VaultHTTP(small.url, timeout=10, max_response_bytes=1024).request("GET", "sys/health")


def test_an_answer_under_the_limit_is_read_whole(serve: Callable[..., OneShot]) -> None:
    body = b'{"data": {"pad": "' + b"x" * 500_000 + b'"}}'

    def fine(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)

    answer = VaultHTTP(serve(fine).url, timeout=10).request("GET", "sys/health")
    assert len(answer.data["data"]["pad"]) == 500_000


# -- header values (shared/repro/r9_newline.py) --------------------------------------------------

@pytest.mark.parametrize(("token", "namespace", "names"), [
    (TOKEN + "\n", None, "VAULT_TOKEN"),
    (TOKEN + "\r\nX-Injected: 1", None, "VAULT_TOKEN"),
    (TOKEN + "\x00", None, "VAULT_TOKEN"),
    (TOKEN, "team\n", "VAULT_NAMESPACE"),
])
def test_a_header_value_with_a_control_character_is_refused_before_sending(
        serve: Callable[..., OneShot], token: str, namespace: str | None, names: str) -> None:
    server = serve(read_request)
    http = VaultHTTP(server.url, timeout=5, namespace=namespace)
    with pytest.raises(ConfigurationError) as info:
        http.request("GET", "auth/token/lookup-self", token=token)
    text = "".join(traceback.format_exception(info.value))
    assert TOKEN not in text and names in text
    assert server.connections == 0


# -- nothing secret in exception chains or frame locals (shared/repro/r10_locals.py) -------------

def secrets_reachable_from(error: BaseException) -> list[str]:
    """What an error tracker could see: messages, the whole chain (suppressed or not), and the
    repr of every local of every frame in every traceback on it."""
    found: list[str] = []
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        exc = pending.pop()
        if exc is None or id(exc) in seen:
            continue
        seen.add(id(exc))
        found.append(f"{exc!s} {exc!r}")
        tb = exc.__traceback__
        while tb is not None:
            found.extend(f"{tb.tb_frame.f_code.co_name}.{name} = {value!r}"
                         for name, value in tb.tb_frame.f_locals.items())
            tb = tb.tb_next
        pending += [exc.__cause__, exc.__context__]
    return [line for line in found if TOKEN in line or SECRET_ID in line]


def test_an_error_answer_leaves_no_secret_in_chain_or_frame_locals(
        serve: Callable[..., OneShot]) -> None:
    def denied(conn: socket.socket) -> None:
        read_request(conn)
        body = b'{"errors": ["permission denied"]}'
        conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: %d\r\n\r\n" % len(body) + body)

    with pytest.raises(HTTPStatusError) as info:
        VaultHTTP(serve(denied).url, timeout=5).request(
            "POST", "auth/approle/login", token=TOKEN, body={"secret_id": SECRET_ID})
    assert secrets_reachable_from(info.value) == []
    captured = traceback.TracebackException.from_exception(info.value, capture_locals=True)
    assert TOKEN not in "".join(captured.format())


@pytest.mark.parametrize("how", ["hang up", "garbage"])
def test_a_transport_failure_leaves_no_secret_in_chain_or_frame_locals(
        serve: Callable[..., OneShot], how: str) -> None:
    def fail(conn: socket.socket) -> None:
        read_request(conn)
        if how == "garbage":
            conn.sendall(b"NOT HTTP AT ALL\r\n\r\n")

    with pytest.raises(TransportError) as info:
        VaultHTTP(serve(fail).url, timeout=5).request(
            "POST", "auth/approle/login", token=TOKEN, body={"secret_id": SECRET_ID})
    assert info.value.__context__ is None
    assert secrets_reachable_from(info.value) == []


# -- redirects between real listeners (shared/repro/r2_redirect.py) ------------------------------

class Recorder(BaseHTTPRequestHandler):
    seen: list[tuple[str, str | None, bytes]]

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.seen.append((self.path, self.headers.get("X-Vault-Token"), self.rfile.read(length)))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")


def test_a_307_to_another_host_gets_neither_token_nor_body(
        serve: Callable[..., OneShot]) -> None:
    seen: list[tuple[str, str | None, bytes]] = []
    other = ThreadingHTTPServer(("127.0.0.2", 0), type("R", (Recorder,), {"seen": seen}))
    threading.Thread(target=other.serve_forever, daemon=True).start()
    elsewhere = f"http://127.0.0.2:{other.server_address[1]}"

    def redirect(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(b"HTTP/1.1 307 Temporary Redirect\r\nLocation: %s/v1/auth/approle/login"
                     b"\r\nContent-Length: 0\r\n\r\n" % elsewhere.encode())

    try:
        front = serve(redirect)
        with pytest.raises(RedirectRefusedError) as info:
            VaultHTTP(front.url, timeout=5).request(
                "POST", "auth/approle/login", token=TOKEN, body={"secret_id": SECRET_ID})
        assert seen == []
        assert f"127.0.0.2:{other.server_address[1]}" in str(info.value)
        assert secrets_reachable_from(info.value) == []
        allowed = VaultHTTP(serve(redirect).url, timeout=5,
                            redirect_hosts=frozenset({"127.0.0.2"}))
        allowed.request("POST", "auth/approle/login", token=TOKEN, body={"secret_id": SECRET_ID})
        assert seen == [("/v1/auth/approle/login", TOKEN, b'{"secret_id": "%s"}'
                         % SECRET_ID.encode())]
    finally:
        other.shutdown()
        other.server_close()


# -- proxy credentials ---------------------------------------------------------------------------

@pytest.mark.parametrize("answer", [b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n", b""])
def test_a_refused_tunnel_leaves_no_proxy_credentials_anywhere(
        serve: Callable[..., OneShot], monkeypatch: pytest.MonkeyPatch, answer: bytes) -> None:
    def proxy(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(answer)

    server = serve(proxy)
    monkeypatch.setenv("HTTPS_PROXY", server.url.replace("http://", f"http://ops:{SECRET_ID}@"))
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with pytest.raises(TransportError) as info:
        VaultHTTP("https://vault.invalid:8200", timeout=5).request("GET", "sys/health",
                                                                   token=TOKEN)
    assert (info.value.kind, info.value.sent) == ("unreachable", False)
    assert secrets_reachable_from(info.value) == []
