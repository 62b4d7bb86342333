"""OpenTelemetry traces for vaultdb (``pip install 'vaultdb-creds[opentelemetry]'``).

:func:`instrument` makes a span for every Vault request vaultdb sends (login, credentials
read, lease renewal and revocation, token renewal...) from the public request observer
(:func:`vaultdb.add_request_observer`), and records lease events
(:meth:`~vaultdb.CredentialProvider.subscribe`) as span events on the span of the request
that caused them. A request made while the application has a span open (the first
``credentials()`` in a request handler) is a child of that span; the renewer thread's are roots.

Span attributes: ``http.request.method``, ``http.response.status_code``, ``vaultdb.vault.path``
(the API path: lease ids and tokens travel in bodies and headers, never in paths),
``vaultdb.operation``, ``vaultdb.outcome``, ``error.type``, ``vaultdb.role`` and
``vaultdb.generation``. No attribute ever holds a token, password, username, secret id,
accessor or lease id.

Nothing here is imported by ``import vaultdb`` or by any other integration: without this
module the request hot path does not change (no observer, no import of OpenTelemetry).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vaultdb import RequestInfo, __version__, add_request_observer
from vaultdb import events as ev
from vaultdb.provider import CredentialProvider

from ._common import MissingExtraError

try:
    from opentelemetry import trace
    from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider
except ImportError as _error:  # pragma: no cover - depends on the environment
    raise MissingExtraError("opentelemetry-api", "opentelemetry") from _error

__all__ = ["VaultDBTracing", "instrument"]

logger = logging.getLogger("vaultdb.integrations.opentelemetry")

#: Operations whose request is followed, on the same thread, by the lease event it caused.
_EVENTFUL = frozenset({"login", "credentials", "renew", "revoke", "token renew"})


def operation_of(path: str) -> str:
    """What a Vault API path does, in a word or two (the span's name after ``vaultdb``)."""
    if path.startswith("auth/token/"):
        return {"auth/token/renew-self": "token renew", "auth/token/revoke-self": "token revoke",
                "auth/token/lookup-self": "token lookup"}.get(path, "token")
    if path.startswith("auth/") and "/login" in path:
        return "login"
    if "/creds/" in path or "/static-creds/" in path:
        return "credentials"
    return {"sys/leases/renew": "renew", "sys/leases/revoke": "revoke",
            "sys/wrapping/unwrap": "unwrap"}.get(path, "vault request")


def event_attributes(event: ev.LeaseEvent) -> dict[str, Any]:
    """The attributes of a lease event: role, generation, durations, reasons; nothing secret."""
    found: dict[str, Any] = {"vaultdb.role": event.role}
    creds = getattr(event, "credentials", None)
    if creds is not None:
        found.update({"vaultdb.generation": creds.generation,
                      "vaultdb.lease_seconds": float(creds.lease_duration),
                      "vaultdb.renewable": bool(creds.renewable),
                      "vaultdb.static": bool(creds.static)})
    if isinstance(event, ev.LeaseRotated):
        found.update({"vaultdb.previous_generation": event.previous.generation,
                      "vaultdb.reason": event.reason})
    elif isinstance(event, ev.LeaseError):
        found.update({"error.type": type(event.error).__name__,
                      "vaultdb.operation": event.operation,
                      "vaultdb.will_retry": event.will_retry})
        if event.error.status is not None:
            found["http.response.status_code"] = event.error.status
    elif isinstance(event, ev.LoginCreated):
        found["vaultdb.auth_method"] = event.method
    elif isinstance(event, ev.LoginRenewed):
        found["vaultdb.token_seconds"] = float(event.ttl)
    return found


_EVENT_NAMES = {
    ev.LeaseRotated: "vaultdb.lease.rotated", ev.LeaseCreated: "vaultdb.lease.created",
    ev.LeaseRenewed: "vaultdb.lease.renewed", ev.LeaseRevoked: "vaultdb.lease.revoked",
    ev.LeaseExpired: "vaultdb.lease.expired", ev.LeaseError: "vaultdb.lease.error",
    ev.LoginCreated: "vaultdb.login.created", ev.LoginRenewed: "vaultdb.login.renewed",
    ev.LoginExpired: "vaultdb.login.expired",
}


@dataclass
class _Pending:
    """A request's span kept open (with its real end time) for the event that follows it."""

    span: Span
    end_ns: int


class VaultDBTracing:
    """Spans for Vault requests and span events for lease events (see the module doc)."""

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        self.tracer = trace.get_tracer("vaultdb", __version__, tracer_provider=tracer_provider)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._pending_by_id: dict[int, _Pending] = {}
        self._unsubscribes: list[Callable[[], None]] = []
        self._remove_observer = add_request_observer(self._on_request)

    # -- requests -------------------------------------------------------------------------

    def _on_request(self, info: RequestInfo) -> None:
        self._finish_pending()
        end_ns = time.time_ns()
        operation = operation_of(info.path)
        attributes: dict[str, Any] = {"http.request.method": info.method,
                                      "vaultdb.vault.path": info.path,
                                      "vaultdb.operation": operation,
                                      "vaultdb.outcome": info.outcome}
        if info.status is not None:
            attributes["http.response.status_code"] = info.status
        if info.role is not None:
            attributes["vaultdb.role"] = info.role
        if info.generation is not None:
            attributes["vaultdb.generation"] = info.generation
        if info.outcome != "ok":
            attributes["error.type"] = info.outcome
        span = self.tracer.start_span(f"vaultdb {operation}", kind=SpanKind.CLIENT,
                                      attributes=attributes,
                                      start_time=end_ns - int(info.seconds * 1e9))
        if info.outcome != "ok":
            span.set_status(Status(StatusCode.ERROR, info.outcome))
        if operation in _EVENTFUL:
            pending = _Pending(span, end_ns)
            self._local.pending = pending
            with self._lock:
                self._pending_by_id[id(pending)] = pending
        else:
            span.end(end_time=end_ns)

    def _finish_pending(self) -> _Pending | None:
        pending: _Pending | None = getattr(self._local, "pending", None)
        if pending is None:
            return None
        self._local.pending = None
        with self._lock:
            still_open = self._pending_by_id.pop(id(pending), None) is not None
        if still_open:  # else flush() ended it
            pending.span.end(end_time=pending.end_ns)
        return pending

    # -- lease events ---------------------------------------------------------------------

    def _on_event(self, event: ev.LeaseEvent) -> None:
        name = _EVENT_NAMES.get(type(event), "vaultdb.event")
        attributes = event_attributes(event)
        pending: _Pending | None = getattr(self._local, "pending", None)
        if pending is not None:
            if "vaultdb.generation" in attributes:
                pending.span.set_attribute("vaultdb.generation", attributes["vaultdb.generation"])
            pending.span.add_event(name, attributes)
            self._finish_pending()
            return
        current = trace.get_current_span()
        if current.is_recording():
            current.add_event(name, attributes)
            return
        # No request to hang it on (an expiry noticed by the renewer): a span of its own.
        span = self.tracer.start_span(f"vaultdb {name.rsplit('.', 2)[-2]} event",
                                      attributes={"vaultdb.role": event.role})
        span.add_event(name, attributes)
        if isinstance(event, (ev.LeaseExpired, ev.LeaseError, ev.LoginExpired)):
            span.set_status(Status(StatusCode.ERROR, name))
        span.end()

    def watch(self, provider: CredentialProvider) -> Callable[[], None]:
        """Record ``provider``'s lease events; returns a function that stops it."""
        unsubscribe = provider.subscribe(self._on_event)
        self._unsubscribes.append(unsubscribe)
        return unsubscribe

    def flush(self) -> None:
        """End every span still waiting for its event (any thread)."""
        with self._lock:
            pending, self._pending_by_id = list(self._pending_by_id.values()), {}
        for item in pending:
            item.span.end(end_time=item.end_ns)

    def close(self) -> None:
        """Stop observing requests and events; end what is still open."""
        self._remove_observer()
        for unsubscribe in self._unsubscribes:
            unsubscribe()
        self._unsubscribes.clear()
        self.flush()


def instrument(*providers: CredentialProvider,
               tracer_provider: TracerProvider | None = None) -> VaultDBTracing:
    """Trace every Vault request of this process, and the lease events of ``providers``.

    ``tracer_provider`` defaults to the global one (``opentelemetry.trace``). Call it once;
    :meth:`VaultDBTracing.watch` adds providers made later, :meth:`VaultDBTracing.close` stops.
    """
    tracing = VaultDBTracing(tracer_provider)
    for provider in providers:
        tracing.watch(provider)
    return tracing
