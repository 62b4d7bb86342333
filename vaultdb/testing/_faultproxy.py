"""A small fault-injecting HTTP proxy to put in front of Vault (or anything speaking HTTP/1.1).

Point a client at :attr:`FaultProxy.addr` instead of Vault's address. In the default mode the
proxy passes every request through and counts it, which is how the benchmarks count Vault
requests per client. Switch modes at any time to see how a client copes with what production
networks and load balancers throw at it::

    with FaultProxy(stack.vault_addr) as proxy:
        provider = CredentialProvider(role, vault_addr=proxy.addr, ...)
        proxy.fail(503)           # answer 503 without asking Vault
        proxy.garbage()           # answer 200 with a body that is not JSON
        proxy.blackhole()         # accept, read the request, never answer (timeouts)
        proxy.delay(1.5)          # forward, but only after 1.5 s (a slow Vault)
        proxy.passthrough()       # back to normal
        proxy.counts["PUT sys/leases/renew"]

A mode can be limited to paths matching a regular expression (``proxy.fail(500,
match="sys/leases/renew")``); other requests still pass. A black-holed request is never
answered, even after the mode changes: its connection is closed, like a dropped packet whose
sender gave up. When the upstream is unreachable (Vault restarting), the proxy answers 502,
as a load balancer would.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import re
import socket
import threading
import time
import urllib.parse
from collections import Counter, deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

__all__ = ["FaultProxy", "ProxiedRequest"]

logger = logging.getLogger(__name__)

_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "te", "trailer",
                         "transfer-encoding", "upgrade", "content-length", "host"})
GARBAGE_BODY = b"<html><body>502 upstream hiccup: this is not JSON</body></html>"
_ERROR_BODY = b'{"errors":["injected by vaultdb FaultProxy"]}'
_UNREACHABLE_BODY = b'{"errors":["upstream unreachable (vaultdb FaultProxy)"]}'


@dataclass(frozen=True)
class ProxiedRequest:
    """One request seen by the proxy: when, what, and what the client got back."""

    at: float  #: ``time.monotonic()`` when the request arrived
    method: str
    path: str  #: without ``/v1/`` and the query string, e.g. ``database/creds/app``
    #: ``"pass"``, ``"fail:503"``, ``"garbage"``, ``"blackhole"``, ``"delay"`` or ``"502"``.
    #: Black-holed and delayed requests are recorded when they arrive, the others when answered.
    outcome: str

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"


@dataclass(frozen=True)
class _Answer:
    status: int
    body: bytes
    outcome: str
    headers: list[tuple[str, str]] | None = None


@dataclass(frozen=True)
class _Mode:
    name: str  # pass | fail | garbage | blackhole | delay
    status: int = 200
    seconds: float = 0.0
    match: re.Pattern[str] | None = None
    generation: int = 0


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 256

    def __init__(self, addr: tuple[str, int], proxy: FaultProxy) -> None:
        self.proxy = proxy
        super().__init__(addr, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    _upstream: http.client.HTTPConnection | None = None

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("fault proxy: " + format, *args)

    def setup(self) -> None:
        super().setup()
        self.server.proxy._track(self.connection, add=True)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.proxy._track(self.connection, add=False)
        if self._upstream is not None:
            self._upstream.close()

    def do_GET(self) -> None:
        self._handle()

    do_PUT = do_POST = do_DELETE = do_LIST = do_PATCH = do_HEAD = do_GET

    def _handle(self) -> None:
        proxy = self.server.proxy
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = urllib.parse.urlsplit(self.path).path
        short = path[4:] if path.startswith("/v1/") else path.lstrip("/")
        mode = proxy._mode
        applies = mode.name != "pass" and (mode.match is None or mode.match.search(short))
        if applies and mode.name == "blackhole":
            proxy._record(self.command, short, "blackhole")
            proxy._wait_while_blackholed(mode)
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if applies and mode.name == "fail":
            answer = _Answer(mode.status, _ERROR_BODY, f"fail:{mode.status}")
        elif applies and mode.name == "garbage":
            answer = _Answer(200, GARBAGE_BODY, "garbage")
        elif applies and mode.name == "delay":
            proxy._record(self.command, short, "delay")
            time.sleep(mode.seconds)
            answer = self._forward(body)
            self._reply(answer)
            return
        else:
            answer = self._forward(body)
        # Recorded before the client can see the answer, so counts never lag behind it.
        proxy._record(self.command, short, answer.outcome)
        self._reply(answer)

    def _reply(self, answer: _Answer) -> None:
        self.send_response(answer.status)
        for name, value in answer.headers or [("Content-Type", "application/json")]:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer.body)

    def _forward(self, body: bytes) -> _Answer:
        proxy = self.server.proxy
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        headers["Host"] = f"{proxy._upstream_host}:{proxy._upstream_port}"
        for attempt in range(2):
            if self._upstream is None:
                self._upstream = http.client.HTTPConnection(
                    proxy._upstream_host, proxy._upstream_port, timeout=proxy.upstream_timeout)
            try:
                self._upstream.request(self.command, self.path, body=body or None,
                                       headers=headers)
                resp = self._upstream.getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException) as exc:
                self._upstream.close()
                self._upstream = None
                if attempt == 0 and not isinstance(exc, (TimeoutError, ConnectionRefusedError)):
                    continue  # a stale keep-alive connection (upstream restarted): once more
                return _Answer(502, _UNREACHABLE_BODY, "502")
            out = [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP_BY_HOP]
            return _Answer(resp.status, data, "pass", out)
        raise AssertionError("unreachable")  # pragma: no cover


class FaultProxy:
    """Threaded HTTP/1.1 proxy on 127.0.0.1 that passes, fails, garbles or black-holes.

    :param upstream: base URL of the real server, e.g. ``stack.vault_addr``.
    :param port: port to listen on (0 picks a free one).
    :param upstream_timeout: timeout of each forwarded request, so a frozen upstream never
        pins a proxy thread for ever.
    """

    def __init__(self, upstream: str, *, port: int = 0, upstream_timeout: float = 30.0,
                 history: int = 100_000) -> None:
        parts = urllib.parse.urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"FaultProxy forwards plain http:// only, not {upstream!r}")
        self.upstream = upstream
        self._upstream_host = parts.hostname
        self._upstream_port = parts.port or 80
        self.upstream_timeout = upstream_timeout
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._mode = _Mode("pass")
        self._closed = False
        self._connections: set[socket.socket] = set()
        self.counts: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()
        self.history: deque[ProxiedRequest] = deque(maxlen=history)
        self._server = _Server(("127.0.0.1", port), self)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.1},
                                        name="vaultdb-fault-proxy", daemon=True)
        self._thread.start()

    # -- addresses and bookkeeping ----------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def addr(self) -> str:
        """What to use as ``VAULT_ADDR``, e.g. ``http://127.0.0.1:40123``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def mode(self) -> str:
        return self._mode.name

    @property
    def total(self) -> int:
        """Requests seen since the last :meth:`reset_counts`."""
        return sum(self.counts.values())

    def reset_counts(self) -> None:
        with self._lock:
            self.counts.clear()
            self.outcomes.clear()
            self.history.clear()

    def faults_served(self) -> int:
        """Requests answered with a fault (or swallowed) since the last reset."""
        return sum(n for outcome, n in self.outcomes.items() if outcome != "pass")

    def _record(self, method: str, path: str, outcome: str) -> None:
        with self._lock:
            self.counts[f"{method} {path}"] += 1
            self.outcomes[outcome] += 1
            self.history.append(ProxiedRequest(time.monotonic(), method, path, outcome))

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    # -- modes ------------------------------------------------------------------------------

    def _set(self, name: str, status: int = 200, match: str | None = None,
             seconds: float = 0.0) -> None:
        with self._changed:
            self._mode = _Mode(name, status, seconds, re.compile(match) if match else None,
                               self._mode.generation + 1)
            self._changed.notify_all()
        logger.info("fault proxy %s: %s%s%s", self.addr, name,
                    f" {status}" if name == "fail" else "", f" for {match!r}" if match else "")

    def passthrough(self) -> None:
        """Forward everything (the default)."""
        self._set("pass")

    def fail(self, status: int = 500, *, match: str | None = None) -> None:
        """Answer ``status`` with a Vault-shaped error body, without asking the upstream."""
        self._set("fail", status, match)

    def garbage(self, *, match: str | None = None) -> None:
        """Answer 200 with a body that is not JSON (a confused load balancer)."""
        self._set("garbage", 200, match)

    def blackhole(self, *, match: str | None = None) -> None:
        """Read requests and never answer them: clients see timeouts, never errors."""
        self._set("blackhole", 200, match)

    def delay(self, seconds: float, *, match: str | None = None) -> None:
        """Forward requests, each only after ``seconds`` (a slow or overloaded Vault)."""
        self._set("delay", 200, match, seconds)

    def _wait_while_blackholed(self, mode: _Mode) -> None:
        with self._changed:
            while not self._closed and self._mode.generation == mode.generation:
                self._changed.wait(1.0)

    # -- lifecycle --------------------------------------------------------------------------

    def close(self) -> None:
        """Stop listening and drop every connection. Idempotent."""
        with self._changed:
            if self._closed:
                return
            self._closed = True
            self._changed.notify_all()
            conns = list(self._connections)
        self._server.shutdown()
        self._server.server_close()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._thread.join(5)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FaultProxy({self.addr} -> {self.upstream}, mode={self.mode})"
