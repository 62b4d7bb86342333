"""Vault's HTTP API over the standard library (``http.client``), for :mod:`vaultdb._vault`.

Why not hvac/requests/urllib3 here: importing requests costs more start-up time than the
login and the credentials read together (``docs/benchmarks-agent.md``), and urllib3 alone adds
~22 ms and ~3.5 MiB while handling one of the transport's five hard cases by itself
(``benchmarks/bench_transport.py``, ``docs/measurements.md``). vaultdb needs six endpoints.
hvac stays the full-API client for setup and tests (:mod:`vaultdb.testing`).

What this module guarantees, so :func:`vaultdb._vault.classify` can decide about retries:

* every failure is a :class:`HTTPStatusError` (Vault answered) or a :class:`TransportError`
  whose ``sent`` says whether the request may have reached Vault; a header value that cannot
  be sent is a :class:`~vaultdb.errors.ConfigurationError` before anything is sent;
* the whole request (DNS, connect, TLS, sending, every byte of the answer, redirects) ends by
  its deadline, and an answer over :data:`~vaultdb._wire.MAX_RESPONSE_BYTES` is refused;
* the token and the body go only to Vault's own scheme, host and port, or to hosts the user
  allows (``redirect_hosts``): other redirects are a :class:`RedirectRefusedError`;
* nothing secret (token header, request body, response body) is put in an exception, its
  chain or the locals of the frames it passes through: only the status and Vault's own
  ``errors`` strings.

One connection per request: Vault calls are rare (a few per lease TTL), and a reused
keep-alive connection that the server closed would turn a safe request into one that "may
have been sent", which a credentials read must not retry.
"""

from __future__ import annotations

import json
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote, urlencode, urljoin

from ._clock import SYSTEM_CLOCK, Clock
from ._wire import MAX_RESPONSE_BYTES, RawResponse, TransportError, WireExchange, reason
from ._wire import proxy_for as _proxy_for  # noqa: F401  (tests use the old name)
from ._wire import target_of as _target
from .errors import ConfigurationError

__all__ = ["Exchange", "HTTPStatusError", "RawResponse", "RedirectRefusedError",
           "TransportError", "VaultHTTP", "VaultResponse"]

#: 307/308 from a standby node keep method and body; follow a few, as the Vault CLI does.
MAX_REDIRECTS = 3



#: Control characters and DEL (a tab is allowed in a header value).
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+\-.^_`|~]+")


def _bad_value(value: str) -> bool:
    """A control character, DEL or a character http.client cannot send (past Latin-1).

    A newline would end the header early: the rest would become a header of its own.
    """
    return _CONTROL.search(value) is not None or (
        not value.isascii() and max(value) > "\xff")


def _bad_name(name: str) -> bool:
    return _NAME.fullmatch(name) is None


class HTTPStatusError(Exception):
    """Vault answered with a non-2xx status. ``errors`` are Vault's own error strings."""

    def __init__(self, status: int, errors: tuple[str, ...]) -> None:
        super().__init__(f"HTTP {status}: {'; '.join(errors) or 'no error text'}")
        self.status = status
        self.errors = errors


class RedirectRefusedError(TransportError):
    """Vault redirected to a host the token and request body may not go to."""

    def __init__(self, detail: str) -> None:
        super().__init__("protocol", detail, sent=True)


@dataclass(frozen=True, eq=False)
class VaultResponse:
    """A 2xx answer from Vault: the decoded JSON object and the response headers."""

    data: dict[str, Any] = field(repr=False)
    headers: Mapping[str, str]


class Exchange(Protocol):
    """One HTTP request and its answer, no redirects followed, finished by ``deadline``.

    ``deadline`` is a time on the transport's :class:`~vaultdb._clock.Clock`. Implementations
    raise :class:`TransportError` when there is no answer (its ``sent`` says whether the request
    may have reached the server). The standard-library one (:class:`vaultdb._wire.WireExchange`)
    talks to sockets; the lifetime simulation plugs a simulated Vault in here, so everything
    above (headers, JSON, redirects, error classification, retries) runs for real in
    simulation. A Unix-socket address arrives as ``http+unix://<quoted path>/v1/...``.
    """

    def __call__(self, method: str, url: str, headers: Mapping[str, str],
                 body: bytes | None, *, deadline: float) -> RawResponse: ...


def _origin(url: str) -> tuple[str, str, int, str | None]:
    found = _target(url)
    return found.scheme, found.host.lower(), found.port, found.unix


def _check_headers(headers: Mapping[str, str]) -> None:
    """Refuse what http.client would reject with the value in its message, or send broken."""
    for name, value in headers.items():
        if _bad_name(name):
            raise ConfigurationError(f"{name!r} is not a valid HTTP header name; not sent.",
                                     hint="the headers passed to the Vault request")
        if _bad_value(value):
            where = {"X-Vault-Token": "VAULT_TOKEN or the token file (a trailing newline, as "
                                      "in a Secret made with --from-file)",
                     "X-Vault-Namespace": "VAULT_NAMESPACE"}.get(name, f"where {name} comes from")
            raise ConfigurationError(
                f"The {name} header value holds a control character (a newline?) or a "
                "character outside Latin-1; nothing was sent.", hint=where)


class VaultHTTP:
    """Sends one JSON request to Vault and returns the decoded answer.

    ``addr`` is ``https://host:port``, ``http://...`` or ``unix:///path/to/socket`` (as the
    Vault CLI takes it, e.g. a local Vault Proxy's listener). ``redirect_hosts`` are the
    ``host`` or ``host:port`` entries besides Vault's own address that a redirect may carry
    the token and body to (``VAULTDB_REDIRECT_HOSTS``).
    """

    def __init__(self, addr: str, *, timeout: float, verify: bool | str = True,
                 client_cert: tuple[str, str | None] | None = None,
                 namespace: str | None = None, clock: Clock = SYSTEM_CLOCK,
                 exchange: Exchange | None = None,
                 redirect_hosts: frozenset[str] = frozenset(),
                 max_response_bytes: int = MAX_RESPONSE_BYTES) -> None:
        self.addr = addr.rstrip("/")
        if self.addr.startswith("unix://"):
            self._base = "http+unix://" + quote(self.addr[len("unix://"):], safe="")
        else:
            self._base = self.addr
        self._origin = _origin(self._base)
        self.timeout = timeout
        self.namespace = namespace
        self.clock = clock
        self.redirect_hosts = frozenset(h.strip().lower().replace("[", "").replace("]", "")
                                        for h in redirect_hosts if h.strip())
        self._verify = verify
        self._client_cert = client_cert
        self._contexts: dict[bool, ssl.SSLContext] = {}
        self._given_exchange = exchange
        self._max_response_bytes = max_response_bytes
        self._exchange: Exchange = exchange if exchange is not None else WireExchange(
            lambda: self.clock.monotonic(), self._ssl_context, max_response_bytes)

    def with_client_cert(self, cert: str, key: str | None = None) -> VaultHTTP:
        """A sibling presenting this client certificate (e.g. for a cert-auth login only).

        Everything else (address, CA settings, namespace, clock, exchange, redirect hosts) is
        shared; the certificate is loaded on the sibling's first https request.
        """
        return VaultHTTP(self.addr, timeout=self.timeout, verify=self._verify,
                         client_cert=(cert, key), namespace=self.namespace, clock=self.clock,
                         exchange=self._given_exchange, redirect_hosts=self.redirect_hosts,
                         max_response_bytes=self._max_response_bytes)

    def _ssl_context(self, for_vault: bool = True) -> ssl.SSLContext:
        """Built on first use: VAULT_CACERT, VAULT_SKIP_VERIFY, client certificate (Vault only).

        A proxy (``for_vault=False``) is verified with the same CA settings and gets no
        client certificate.
        """
        if for_vault not in self._contexts:
            verify = self._verify
            bundle = verify if isinstance(verify, str) else None
            import os

            try:  # a directory is a hashed CA directory (VAULT_CAPATH), a file a PEM bundle
                context = ssl.create_default_context(
                    cafile=bundle if bundle and not os.path.isdir(bundle) else None,
                    capath=bundle if bundle and os.path.isdir(bundle) else None)
            except (OSError, ssl.SSLError) as exc:
                raise TransportError(
                    "tls", f"cannot load the CA certificates: {reason(exc)}",
                    sent=False) from None
            if verify is False:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            if self._client_cert and for_vault:
                try:
                    context.load_cert_chain(*self._client_cert)
                except (OSError, ssl.SSLError) as exc:
                    raise TransportError(
                        "tls", f"cannot load the client certificate: {type(exc).__name__}",
                        sent=False) from None
            self._contexts[for_vault] = context
        return self._contexts[for_vault]

    def request(self, method: str, path: str, *, token: str | None = None,
                body: dict[str, Any] | None = None,
                params: dict[str, str] | None = None,
                deadline: float | None = None,
                headers: Mapping[str, str] | None = None) -> VaultResponse:
        """``method`` ``/v1/<path>``; the JSON answer (``{}`` for 204). Raises the two errors.

        The whole request, redirects included, ends by ``deadline`` (a time on ``clock``) or
        ``timeout`` from now, whichever is earlier.
        """
        sent: dict[str, str] | None = None
        payload: bytes | None = None
        try:
            limit = self.clock.monotonic() + self.timeout
            deadline = limit if deadline is None else min(deadline, limit)
            url = f"{self._base}/v1/{path}"
            if params:
                url = f"{url}?{urlencode(params)}"
            sent = {"X-Vault-Request": "true", "Accept": "application/json",
                    "Connection": "close"}
            if token:
                sent["X-Vault-Token"] = token
            if self.namespace:
                sent["X-Vault-Namespace"] = self.namespace
            if headers:
                sent.update(headers)
            if body is not None:
                payload = json.dumps(body).encode()
                sent["Content-Type"] = "application/json"
            _check_headers(sent)
            for _ in range(MAX_REDIRECTS + 1):
                if self.clock.monotonic() >= deadline:
                    raise TransportError("timeout", "no answer in time", sent=True)
                raw = self._exchange(method, url, sent, payload, deadline=deadline)
                location = raw.headers.get("location")
                if raw.status in (307, 308) and location:
                    url = self._redirect(url, location)
                    continue
                break
            return _decode(raw)
        except (TransportError, HTTPStatusError, ConfigurationError) as exc:
            exc.__context__ = None  # whatever it came from held the request: not kept
            raise
        finally:
            # Error trackers capture the locals of every frame an exception passes through.
            token = body = headers = sent = payload = None

    def _redirect(self, current: str, location: str) -> str:
        """Where a 307/308 leads, if the token and body may go there; else refused."""
        if location.startswith("/") and not location.startswith("//"):  # the usual case
            following = current[:current.index("/", current.index("://") + 3)] + location
        else:  # absolute, or relative to the current path (urljoin: http and https only)
            following = urljoin(current, location)
        scheme, host, port, unix = _origin(following)
        if current.startswith("https://") and scheme != "https":
            raise TransportError("tls", "Vault redirected from https to plain http; "
                                 "not followed (the token would travel in clear)", sent=True)
        if (scheme, host, port, unix) == self._origin:
            return following
        if scheme in ("http", "https") and (
                host in self.redirect_hosts or f"{host}:{port}" in self.redirect_hosts):
            return following
        where = f"{host}:{port}" if scheme in ("http", "https") else f"a {scheme} address"
        raise RedirectRefusedError(
            f"Vault redirected to {where}, not the host of VAULT_ADDR; not followed, so the "
            "token and the request body were not sent there. If that is your cluster's "
            "active node, add it to VAULTDB_REDIRECT_HOSTS (or point VAULT_ADDR at a node "
            "that forwards requests)")


def _decode(raw: RawResponse) -> VaultResponse:
    status, answer = raw.status, raw.body
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


def _vault_errors(body: bytes) -> tuple[str, ...]:
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        return ()
    found = data.get("errors") if isinstance(data, dict) else None
    return tuple(str(e) for e in found) if isinstance(found, list) else ()
