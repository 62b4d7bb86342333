"""Vault's HTTP API over the standard library (``http.client``), for :mod:`vaultdb._vault`.

Why not hvac/requests here: importing requests costs more start-up time than the login and
the credentials read together (measured in ``docs/benchmarks-agent.md``), and vaultdb needs
six endpoints. hvac stays the full-API client for setup and tests (:mod:`vaultdb.testing`).

What this module guarantees, so :func:`vaultdb._vault.classify` can decide about retries:

* every failure is a :class:`HTTPStatusError` (Vault answered) or a :class:`TransportError`
  whose ``sent`` says whether the request may have reached Vault;
* every socket operation, and the DNS lookup, is bounded by ``timeout``;
* nothing secret (token header, request body, response body) is put in an exception: only
  the status and Vault's own ``errors`` strings.

One connection per request: Vault calls are rare (a few per lease TTL), and a reused
keep-alive connection that the server closed would turn a safe request into one that "may
have been sent", which a credentials read must not retry.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import unquote, urlencode, urlsplit

from ._clock import SYSTEM_CLOCK, Clock

__all__ = ["Exchange", "HTTPStatusError", "RawResponse", "TransportError", "VaultHTTP",
           "VaultResponse"]

#: 307/308 from a standby node keep method and body; follow a few, as the Vault CLI does.
MAX_REDIRECTS = 3


class TransportError(Exception):
    """The request got no HTTP answer. ``kind`` is tls, unreachable, timeout or protocol."""

    def __init__(self, kind: str, detail: str, *, sent: bool) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
        self.sent = sent


class HTTPStatusError(Exception):
    """Vault answered with a non-2xx status. ``errors`` are Vault's own error strings."""

    def __init__(self, status: int, errors: tuple[str, ...]) -> None:
        super().__init__(f"HTTP {status}: {'; '.join(errors) or 'no error text'}")
        self.status = status
        self.errors = errors


@dataclass(frozen=True, eq=False)
class RawResponse:
    """One HTTP answer as it came off the wire. Header names are lower case."""

    status: int
    headers: Mapping[str, str]
    body: bytes = field(repr=False)


@dataclass(frozen=True, eq=False)
class VaultResponse:
    """A 2xx answer from Vault: the decoded JSON object and the response headers."""

    data: dict[str, Any] = field(repr=False)
    headers: Mapping[str, str]


class Exchange(Protocol):
    """One HTTP request and its answer, no redirects followed, finished by ``deadline``.

    ``deadline`` is a time on the transport's :class:`~vaultdb._clock.Clock`. Implementations
    raise :class:`TransportError` when there is no answer (its ``sent`` says whether the request
    may have reached the server). The standard-library one talks to sockets; the lifetime
    simulation plugs a simulated Vault in here, so everything above (headers, JSON, redirects,
    error classification, retries) runs for real in simulation.
    """

    def __call__(self, method: str, url: str, headers: Mapping[str, str],
                 body: bytes | None, *, deadline: float) -> RawResponse: ...


@dataclass(frozen=True)
class _Target:
    """Where to connect: Vault itself or a proxy."""

    scheme: str
    host: str
    port: int
    #: ``Proxy-Authorization`` value when a proxy URL carries ``user:password@``.
    authorization: str | None = field(default=None, repr=False, compare=False)


def _target(url: str) -> _Target:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    default = 443 if scheme == "https" else 80
    authorization = None
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(pair.encode()).decode()
    return _Target(scheme, parts.hostname or "", parts.port or default, authorization)


def _proxy_for(target: _Target) -> _Target | None:
    """The proxy from ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY``, as requests honoured it.

    ``http://user:password@proxy:3128`` authenticates with Basic auth, as requests does.

    urllib.request (which parses these the standard way) is imported only when a proxy
    variable is set, so the common case pays nothing for it.
    """
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
    found = _target(proxy)
    return found if found.host else None


def _connect(address: tuple[str, int], timeout: float | None = None,
             source_address: tuple[str, int] | None = None) -> socket.socket:
    """``socket.create_connection``, with the name lookup bounded by ``timeout`` too.

    ``getaddrinfo`` has no timeout of its own: with a dead DNS server it blocks for the
    resolver's retries (often 10 to 30 s), past any request timeout and past a pod's grace
    period during ``close()``. So a host name is looked up on a helper thread and given up on
    after ``timeout`` (the thread ends when the resolver does). IP literals need no lookup.

    An ASCII host name is passed as bytes: a ``str`` goes through the idna codec, whose first
    use imports ``stringprep`` and ``unicodedata`` (over a millisecond of a cold start).
    """
    host, port = address
    addresses = [host] if _is_ip_literal(host) else _resolve(host, port, timeout)
    last_error: OSError | None = None
    for ip in addresses:
        literal: Any = ip.encode()  # bytes skip the idna codec; typeshed says str only
        try:
            return socket.create_connection((literal, port), timeout, source_address)
        except OSError as exc:  # the next address may answer (IPv6 first, then IPv4)
            last_error = exc
    raise last_error or OSError(f"no address for {host!r}")


def _is_ip_literal(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except (OSError, ValueError):
        return False
    return True


def _resolve(host: str, port: int, timeout: float | None) -> list[str]:
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
        waited = round(timeout or 0, 1)
        raise socket.gaierror(socket.EAI_AGAIN, f"no answer from DNS within {waited:g}s")
    if isinstance(outcome[0], Exception):
        raise outcome[0]
    addresses: list[str] = []
    for _family, _type, _proto, _name, sockaddr in outcome[0]:
        if sockaddr[0] not in addresses:
            addresses.append(str(sockaddr[0]))
    return addresses


def _vault_errors(body: bytes) -> tuple[str, ...]:
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        return ()
    found = data.get("errors") if isinstance(data, dict) else None
    return tuple(str(e) for e in found) if isinstance(found, list) else ()


class VaultHTTP:
    """Sends one JSON request to Vault and returns the decoded answer."""

    def __init__(self, addr: str, *, timeout: float, verify: bool | str = True,
                 client_cert: tuple[str, str] | None = None,
                 namespace: str | None = None, clock: Clock = SYSTEM_CLOCK,
                 exchange: Exchange | None = None) -> None:
        self.addr = addr.rstrip("/")
        self.timeout = timeout
        self.namespace = namespace
        self.clock = clock
        self._verify = verify
        self._client_cert = client_cert
        self._ssl: ssl.SSLContext | None = None
        self._exchange: Exchange = exchange if exchange is not None else self._send

    def _ssl_context(self) -> ssl.SSLContext:
        """Built on first https use: VAULT_CACERT, VAULT_SKIP_VERIFY, client certificate."""
        if self._ssl is None:
            verify = self._verify
            bundle = verify if isinstance(verify, str) else None
            try:  # a directory is a hashed CA directory (VAULT_CAPATH), a file a PEM bundle
                context = ssl.create_default_context(
                    cafile=bundle if bundle and not os.path.isdir(bundle) else None,
                    capath=bundle if bundle and os.path.isdir(bundle) else None)
            except (OSError, ssl.SSLError) as exc:
                raise TransportError(
                    "tls", f"cannot load the CA certificates: {_reason(exc)}",
                    sent=False) from None
            if verify is False:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            if self._client_cert:
                try:
                    context.load_cert_chain(*self._client_cert)
                except (OSError, ssl.SSLError) as exc:
                    raise TransportError(
                        "tls", f"cannot load the client certificate: {type(exc).__name__}",
                        sent=False) from None
            self._ssl = context
        return self._ssl

    def request(self, method: str, path: str, *, token: str | None = None,
                body: dict[str, Any] | None = None,
                params: dict[str, str] | None = None,
                deadline: float | None = None,
                headers: Mapping[str, str] | None = None) -> VaultResponse:
        """``method`` ``/v1/<path>``; the JSON answer (``{}`` for 204). Raises the two errors.

        The whole request, redirects included, ends by ``deadline`` (a time on ``clock``) or
        ``timeout`` from now, whichever is earlier.
        """
        limit = self.clock.monotonic() + self.timeout
        deadline = limit if deadline is None else min(deadline, limit)
        url = f"{self.addr}/v1/{path}"
        if params:
            url = f"{url}?{urlencode(params)}"
        sent = {"X-Vault-Request": "true", "Accept": "application/json",
                   "Connection": "close"}
        if token:
            sent["X-Vault-Token"] = token
        if self.namespace:
            sent["X-Vault-Namespace"] = self.namespace
        payload = None
        if headers:
            sent.update(headers)
        if body is not None:
            payload = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        for _ in range(MAX_REDIRECTS + 1):
            if self.clock.monotonic() >= deadline:
                raise TransportError("timeout", "no answer in time", sent=True)
            raw = self._exchange(method, url, sent, payload, deadline=deadline)
            status, answer = raw.status, raw.body
            location = raw.headers.get("location")
            if status in (307, 308) and location:
                following = location if "://" in location else f"{self.addr}{location}"
                if url.startswith("https://") and not following.startswith("https://"):
                    raise TransportError("tls", "Vault redirected from https to plain http; "
                                         "not followed (the token would travel in clear)",
                                         sent=True)
                url = following
                continue
            break
        if status == 400 and b"HTTP request to an HTTPS server" in answer:
            raise TransportError("tls", "the server speaks TLS: VAULT_ADDR must use https://",
                                 sent=False)
        if not 200 <= status < 300:
            raise HTTPStatusError(status, _vault_errors(answer))
        if status == 204 or not answer.strip():
            return VaultResponse({}, raw.headers)
        try:
            data = json.loads(answer)
        except ValueError:  # a fresh error: JSONDecodeError keeps the whole body in .doc
            raise ValueError("Vault's answer is not JSON") from None
        if not isinstance(data, dict):
            raise ValueError("Vault's answer is not a JSON object")
        return VaultResponse(data, raw.headers)

    def _send(self, method: str, url: str, headers: Mapping[str, str],
              body: bytes | None, *, deadline: float) -> RawResponse:
        """The standard-library :class:`Exchange`: one connection per request."""
        timeout = max(0.001, deadline - self.clock.monotonic())
        target = _target(url)
        proxy = _proxy_for(target)
        hop = proxy or target
        conn: http.client.HTTPConnection
        if target.scheme == "https":
            conn = http.client.HTTPSConnection(hop.host, hop.port, timeout=timeout,
                                               context=self._ssl_context())
            if proxy:
                conn.set_tunnel(target.host, target.port, headers=(
                    {"Proxy-Authorization": proxy.authorization} if proxy.authorization
                    else None))
            request_target = url[url.index("/", len("https://")):]
        else:
            conn = http.client.HTTPConnection(hop.host, hop.port, timeout=timeout)
            request_target = url if proxy else url[url.index("/", len("http://")):]
            if proxy and proxy.authorization:
                headers = {**headers, "Proxy-Authorization": proxy.authorization}
        headers = dict(headers)
        # http.client's own hook for opening the socket (the same in 3.10 to 3.13).
        conn._create_connection = _connect  # type: ignore[attr-defined]
        try:
            try:
                conn.connect()
            except ssl.SSLError as exc:
                raise TransportError("tls", _reason(exc), sent=False) from None
            except (TimeoutError, OSError) as exc:
                raise TransportError("unreachable", _reason(exc), sent=False) from None
            try:
                conn.request(method, request_target, body=body, headers=headers)
                response = conn.getresponse()
                answer = response.read()
                return RawResponse(response.status,
                                   {k.lower(): v for k, v in response.getheaders()}, answer)
            except TimeoutError:
                raise TransportError("timeout", "no answer in time", sent=True) from None
            except (http.client.HTTPException, OSError) as exc:
                raise TransportError("protocol", _reason(exc), sent=True) from None
        finally:
            conn.close()


def _reason(exc: BaseException) -> str:
    """The exception's class and its OS/TLS reason: never a request or response body."""
    if isinstance(exc, ssl.SSLError):
        detail = getattr(exc, "verify_message", None) or exc.reason or ""
        return f"{type(exc).__name__}: {detail}".rstrip(": ")
    if isinstance(exc, socket.gaierror):
        return f"name resolution failed ({exc.strerror})"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    return type(exc).__name__
