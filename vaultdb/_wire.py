"""The standard-library :class:`~vaultdb._http.Exchange`: one HTTP request on its own connection.

Why by hand rather than urllib3 (figures in ``docs/measurements.md``): urllib3 adds ~22 ms to
an import of vaultdb and ~3.5 MiB, and of what this module must do it handles only TLS to an
``https://`` proxy by itself. Its timeouts, like ``http.client``'s, are per socket operation,
so a server trickling one byte at a time holds a call for as long as it likes.

So every byte goes through a small stream whose each ``send``/``recv`` gets the socket
timeout cut to the time left before the request's ``deadline`` (on the injected clock), and
TLS runs over :class:`ssl.MemoryBIO` on top of such a stream: the handshake is bounded the
same way, and TLS inside TLS (an ``https://`` proxy tunnelling to an ``https://`` Vault)
comes for free. ``http.client`` still writes the request and parses the answer, reading
through a counter that stops at ``max_bytes``.
"""

from __future__ import annotations

import http.client
import io
import socket
import ssl
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Union
from urllib.parse import unquote, urlsplit

__all__ = ["MAX_RESPONSE_BYTES", "RawResponse", "TransportError", "WireExchange"]

#: Vault's answers are a few KiB; anything past this is not Vault (or not a sane one).
MAX_RESPONSE_BYTES = 1 << 20


class TransportError(Exception):
    """The request got no HTTP answer. ``kind`` is tls, unreachable, timeout or protocol."""

    def __init__(self, kind: str, detail: str, *, sent: bool) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
        self.sent = sent


@dataclass(frozen=True, eq=False)
class RawResponse:
    """One HTTP answer as it came off the wire. Header names are lower case."""

    status: int
    headers: Mapping[str, str]
    body: bytes = field(repr=False)


@dataclass(frozen=True)
class Target:
    """Where to connect: Vault itself or a proxy (``unix`` is a socket path)."""

    scheme: str
    host: str
    port: int
    #: ``Proxy-Authorization`` value when a proxy URL carries ``user:password@``.
    authorization: str | None = field(default=None, repr=False, compare=False)
    unix: str | None = None


def target_of(url: str) -> Target:
    """The scheme, host and port of ``url``; ``http+unix://<quoted path>`` is a Unix socket."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "http+unix":
        return Target(scheme, "localhost", 0, unix=unquote(parts.netloc))
    default = 443 if scheme == "https" else 80
    authorization = None
    if parts.username is not None:
        import base64

        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(pair.encode()).decode()
    return Target(scheme, parts.hostname or "", parts.port or default, authorization)


class _TooLarge(Exception):
    """The answer passed ``max_bytes``."""


class _Timer:
    """Time left before ``deadline`` on ``monotonic``; TimeoutError once none is left."""

    def __init__(self, monotonic: Callable[[], float], deadline: float) -> None:
        self._monotonic = monotonic
        self._deadline = deadline

    def left(self) -> float:
        left = self._deadline - self._monotonic()
        if left <= 0:
            raise TimeoutError("no time left")
        return left


class _SocketStream:
    """A socket whose every operation is bounded by the time left."""

    def __init__(self, sock: socket.socket, timer: _Timer) -> None:
        self.sock = sock
        self._timer = timer

    def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            self.sock.settimeout(self._timer.left())
            view = view[self.sock.send(view):]

    def recv(self, size: int) -> bytes:
        self.sock.settimeout(self._timer.left())
        return self.sock.recv(size)


class _TLSStream:
    """TLS over any stream through memory BIOs, so each socket wait is bounded by the timer."""

    def __init__(self, inner: _Stream, context: ssl.SSLContext, host: str) -> None:
        self._inner = inner
        self._incoming, self._outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_hostname=host)

    def handshake(self) -> None:
        self._run(self._tls.do_handshake)

    def _run(self, operation: Callable[..., Any], *args: Any) -> Any:
        while True:
            try:
                result = operation(*args)
            except ssl.SSLWantReadError:
                if self._incoming.eof:
                    raise ssl.SSLEOFError("EOF in the middle of TLS") from None
                self._flush()
                data = self._inner.recv(65536)
                if data:
                    self._incoming.write(data)
                else:
                    self._incoming.write_eof()
                continue
            self._flush()
            return result

    def _flush(self) -> None:
        pending = self._outgoing.read()
        if pending:
            self._inner.send(pending)

    def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[self._run(self._tls.write, view):]

    def recv(self, size: int) -> bytes:
        try:
            return bytes(self._run(self._tls.read, size))
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):  # HTTP framing catches truncation
            return b""


_Stream = Union["_SocketStream", "_TLSStream"]  # what both offer: send(data), recv(size)


class _Reader(io.RawIOBase):
    """The answer as a file for ``http.client``, stopping at ``limit`` bytes."""

    def __init__(self, stream: _Stream, limit: int) -> None:
        self._stream = stream
        self._left = limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._stream.recv(min(len(buffer), 65536))
        self._left -= len(data)
        if self._left < 0:
            raise _TooLarge
        buffer[:len(data)] = data
        return len(data)


class _Socket:
    """The three things ``http.client`` asks of a socket, over a bounded stream."""

    def __init__(self, stream: _Stream, limit: int) -> None:
        self._stream = stream
        self._limit = limit

    def sendall(self, data: bytes) -> None:
        self._stream.send(data)

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(_Reader(self._stream, self._limit))

    def close(self) -> None:
        """The exchange closes the socket itself."""


class WireExchange:
    """Sockets, TLS, proxies (``HTTPS_PROXY`` & co.) and Unix sockets, bounded by a deadline.

    ``context`` gives the TLS settings for Vault (``True``) or for a proxy (``False``: the
    same CA settings, no client certificate).
    """

    def __init__(self, monotonic: Callable[[], float],
                 context: Callable[[bool], ssl.SSLContext],
                 max_bytes: int = MAX_RESPONSE_BYTES) -> None:
        self._monotonic = monotonic
        self._context = context
        self.max_bytes = max_bytes

    def __call__(self, method: str, url: str, headers: Mapping[str, str],
                 body: bytes | None, *, deadline: float) -> RawResponse:
        timer = _Timer(self._monotonic, deadline)
        target = target_of(url)
        proxy = None if target.unix else proxy_for(target)
        sock: socket.socket | None = None
        try:
            sock, stream = self._open(target, proxy, timer)
            path = url[url.index("/", len(target.scheme) + 3):]
            if proxy and target.scheme == "http":
                path = url
                if proxy.authorization:
                    headers = {**headers, "Proxy-Authorization": proxy.authorization}
            conn = http.client.HTTPConnection(target.host, target.port or None)
            conn.sock = _Socket(stream, self.max_bytes)  # type: ignore[assignment]
            try:
                conn.request(method, path, body=body, headers=dict(headers))
                response = conn.getresponse()
                answer = response.read()
                return RawResponse(response.status,
                                   {k.lower(): v for k, v in response.getheaders()}, answer)
            except TimeoutError:
                raise TransportError("timeout", "no answer in time", sent=True) from None
            except _TooLarge:
                raise TransportError("protocol", f"the answer is larger than {self.max_bytes} "
                                     "bytes; not read further", sent=True) from None
            except (http.client.HTTPException, OSError) as exc:
                raise TransportError("protocol", reason(exc), sent=True) from None
        finally:
            headers = body = None  # type: ignore[assignment]  # no secret in frame locals
            if sock is not None:
                sock.close()

    def _open(self, target: Target, proxy: Target | None, timer: _Timer
              ) -> tuple[socket.socket, _Stream]:
        """A connected stream to Vault: through the proxy's tunnel, TLS done. Not yet sent."""
        hop = proxy or target
        if proxy and proxy.scheme not in ("http", "https"):
            raise TransportError("unreachable", f"the proxy URL scheme {proxy.scheme}:// is "
                                 "not supported (HTTPS_PROXY, HTTP_PROXY and ALL_PROXY take "
                                 "http:// or https://)", sent=False)
        try:
            if target.unix is not None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    sock.settimeout(timer.left())
                    sock.connect(target.unix)
                except BaseException:
                    sock.close()
                    raise
            else:
                sock = connect((hop.host, hop.port), timer.left)
        except OSError as exc:
            raise TransportError("unreachable", reason(exc), sent=False) from None
        stream: _Stream = _SocketStream(sock, timer)
        try:
            if proxy and proxy.scheme == "https":
                stream = self._tls(stream, self._context(False), proxy, "the proxy")
            if proxy and target.scheme == "https":
                _tunnel(stream, target, proxy.authorization)
            if target.scheme == "https":
                stream = self._tls(stream, self._context(True), target, "Vault")
        except BaseException:
            sock.close()
            raise
        return sock, stream

    @staticmethod
    def _tls(inner: _Stream, context: ssl.SSLContext, peer: Target, who: str) -> _TLSStream:
        stream = _TLSStream(inner, context, peer.host)
        try:
            stream.handshake()
        except ssl.SSLError as exc:
            prefix = "" if who == "Vault" else f"with {who} {peer.host}:{peer.port}: "
            raise TransportError("tls", prefix + reason(exc), sent=False) from None
        except OSError as exc:
            raise TransportError("unreachable", f"{who}: TLS handshake: {reason(exc)}",
                                 sent=False) from None
        return stream


def _tunnel(stream: _Stream, target: Target, authorization: str | None) -> None:
    """``CONNECT host:port`` through the proxy; its ``200`` head read, nothing more."""
    host = f"[{target.host}]" if ":" in target.host else target.host
    head = f"CONNECT {host}:{target.port} HTTP/1.1\r\nHost: {host}:{target.port}\r\n"
    try:
        if authorization:
            head += f"Proxy-Authorization: {authorization}\r\n"
        try:
            stream.send(f"{head}\r\n".encode())
            answer = b""
            while b"\r\n\r\n" not in answer:
                chunk = stream.recv(4096)
                if not chunk or len(answer) > 65536:
                    raise OSError("the proxy closed the connection or sent no end of its answer")
                answer += chunk
        except OSError as exc:
            raise TransportError("unreachable", f"the proxy: {reason(exc)}",
                                 sent=False) from None
    finally:
        authorization = head = None  # type: ignore[assignment]  # proxy credentials
    status = answer.split(b"\r\n", 1)[0].split(b" ")
    if len(status) < 2 or status[1] != b"200":
        code = status[1].decode("ascii", "replace")[:3] if len(status) > 1 else "?"
        raise TransportError("unreachable", f"the proxy refused the tunnel (HTTP {code}); "
                             "check HTTPS_PROXY and its credentials", sent=False)
    if not answer.endswith(b"\r\n\r\n"):
        raise TransportError("unreachable", "the proxy sent data after its 200 answer",
                             sent=False)


def proxy_for(target: Target) -> Target | None:
    """The proxy from ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY``, as requests honoured it.

    ``http://user:password@proxy:3128`` authenticates with Basic auth, as requests does; an
    ``https://`` proxy URL is spoken to in TLS (verified with Vault's CA settings), so its
    credentials never cross the network in clear.

    urllib.request (which parses these the standard way) is imported only when a proxy
    variable is set, so the common case pays nothing for it.
    """
    import os

    if not any(k.lower() in {"http_proxy", "https_proxy", "all_proxy"} for k in os.environ):
        return None
    import urllib.request

    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(target.scheme) or proxies.get("all")
    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
    if not proxy or bypass(target.host, proxies):
        return None
    if "://" not in proxy:
        proxy = f"http://{proxy}"
    found = target_of(proxy)
    return found if found.host else None


def connect(address: tuple[str, int], left: Callable[[], float]) -> socket.socket:
    """``socket.create_connection``, with the name lookup bounded by the time ``left()`` too.

    ``getaddrinfo`` has no timeout of its own: with a dead DNS server it blocks for the
    resolver's retries (often 10 to 30 s), past any request timeout and past a pod's grace
    period during ``close()``. So a host name is looked up on a helper thread and given up on
    when the time is up (the thread ends when the resolver does). IP literals need no lookup.

    An ASCII host name is passed as bytes: a ``str`` goes through the idna codec, whose first
    use imports ``stringprep`` and ``unicodedata`` (over a millisecond of a cold start).
    """
    host, port = address
    addresses = [host] if _is_ip_literal(host) else _resolve(host, port, left())
    last_error: OSError | None = None
    for ip in addresses:
        literal: Any = ip.encode()  # bytes skip the idna codec; typeshed says str only
        try:
            return socket.create_connection((literal, port), left())
        except OSError as exc:  # the next address may answer (IPv6 first, then IPv4)
            last_error = exc
    raise last_error or OSError(f"no address for {host!r}")


def _is_ip_literal(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except (OSError, ValueError):
        return False
    return True


def _resolve(host: str, port: int, timeout: float) -> list[str]:
    """The addresses of ``host`` in the resolver's order; gaierror after ``timeout``."""
    name: Any = host.encode() if host.isascii() else host  # ASCII: no idna codec needed
    outcome: list[Any] = []
    done = threading.Event()

    def lookup() -> None:
        try:
            outcome.append(socket.getaddrinfo(name, port, 0, socket.SOCK_STREAM))
        except Exception as exc:  # handed to the caller below
            outcome.append(exc)
        finally:
            done.set()

    threading.Thread(target=lookup, name="vaultdb-resolve", daemon=True).start()
    if not done.wait(timeout):
        raise socket.gaierror(socket.EAI_AGAIN, f"no answer from DNS within {timeout:.1f}s")
    if isinstance(outcome[0], Exception):
        raise outcome[0]
    addresses: list[str] = []
    for _family, _type, _proto, _name, sockaddr in outcome[0]:
        if sockaddr[0] not in addresses:
            addresses.append(str(sockaddr[0]))
    return addresses


def reason(exc: BaseException) -> str:
    """The exception's class and its OS/TLS reason: never a request or response body."""
    if isinstance(exc, ssl.SSLError):
        detail = getattr(exc, "verify_message", None) or exc.reason or ""
        return f"{type(exc).__name__}: {detail}".rstrip(": ")
    if isinstance(exc, socket.gaierror):
        return f"name resolution failed ({exc.strerror})"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    return type(exc).__name__
