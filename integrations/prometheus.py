"""Prometheus metrics for vaultdb providers (``pip install 'vaultdb-creds[prometheus]'``).

Nothing is registered on import: :func:`instrument` adds one collector to a registry (the
default ``prometheus_client.REGISTRY`` unless given) the first time it is called for that
registry, and makes it report on ``provider``. Exposing the registry (``/metrics``) stays the
application's choice, e.g. ``prometheus_client.start_http_server(9100)`` or
``prometheus_client.make_wsgi_app()``.

At scrape time the collector reads :meth:`~vaultdb.CredentialProvider.status` (seconds left,
generation, health and the provider's own counters: no lock, no Vault call). Errors by kind and
expiries come from :meth:`~vaultdb.CredentialProvider.subscribe`; Vault request latency from
the request observer in :mod:`vaultdb._vault`, which sees every Vault call made in the process.

Every per-provider metric has the labels ``mount`` (the secrets engine mount: tells databases
apart when role names repeat, e.g. ``database`` for PostgreSQL and ``mysql`` for MySQL) and
``role``. Gauges: ``vaultdb_lease_seconds_left`` (until the credentials' deadline, the
earlier of lease and token end), ``vaultdb_token_seconds_left``, ``vaultdb_generation``,
``vaultdb_healthy``. Counters: ``vaultdb_logins_total``, ``_renewals_total``,
``_rotations_total``, ``_revocations_total``, ``_expirations_total``, and
``vaultdb_errors_total{mount,role,kind}`` by error class. Histogram:
``vaultdb_vault_request_duration_seconds{method,path,outcome}``.

No label or sample ever holds a username, password, token or lease id.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from vaultdb import RequestInfo, add_request_observer
from vaultdb import events as ev
from vaultdb.provider import CredentialProvider

from ._common import MissingExtraError

try:
    from prometheus_client import REGISTRY, CollectorRegistry, Histogram
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
    from prometheus_client.registry import Collector
except ImportError as _error:  # pragma: no cover - depends on the environment
    raise MissingExtraError("prometheus_client", "prometheus") from _error

__all__ = ["VaultDBCollector", "instrument", "uninstrument_registry"]

logger = logging.getLogger("vaultdb.integrations.prometheus")

#: Vault calls take milliseconds on a healthy network; the top buckets catch timeouts.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class _Watched:
    """One instrumented provider: a weak reference and what its events told us."""

    provider: weakref.ref[CredentialProvider]
    mount: str
    role: str
    unsubscribe: Callable[[], None]
    errors: dict[str, int] = field(default_factory=dict)
    expirations: int = 0


class VaultDBCollector(Collector):
    """Reports every provider :func:`instrument` attached to one registry."""

    def __init__(self, *, namespace: str = "vaultdb") -> None:
        self.namespace = namespace
        self._lock = threading.Lock()
        self._watched: dict[int, _Watched] = {}
        self.latency = Histogram(
            "vault_request_duration_seconds",
            "Latency of Vault HTTP requests made by vaultdb, by method, path and outcome "
            "('ok' or the vaultdb error class).",
            ["method", "path", "outcome"], namespace=namespace, buckets=LATENCY_BUCKETS,
            registry=None)
        self._remove_observer = add_request_observer(self._observe)

    # -- feeding --------------------------------------------------------------------------

    def _observe(self, info: RequestInfo) -> None:
        self.latency.labels(info.method, info.path, info.outcome).observe(info.seconds)

    def watch(self, provider: CredentialProvider) -> Callable[[], None]:
        key = id(provider)
        with self._lock:
            if key in self._watched and self._watched[key].provider() is provider:
                return lambda: self.unwatch(provider)

        def on_event(event: ev.LeaseEvent) -> None:
            with self._lock:
                entry = self._watched.get(key)
                if entry is None:
                    return
                if isinstance(event, ev.LeaseError):
                    kind = type(event.error).__name__
                    entry.errors[kind] = entry.errors.get(kind, 0) + 1
                elif isinstance(event, ev.LeaseExpired):
                    entry.expirations += 1

        unsubscribe = provider.subscribe(on_event, ev.LeaseError, ev.LeaseExpired)
        with self._lock:
            self._watched[key] = _Watched(weakref.ref(provider), provider.mount, provider.role,
                                          unsubscribe)
        logger.debug("prometheus metrics enabled for vaultdb role %r", provider.role)
        return lambda: self.unwatch(provider)

    def unwatch(self, provider: CredentialProvider) -> None:
        with self._lock:
            entry = self._watched.pop(id(provider), None)
        if entry is not None:
            entry.unsubscribe()

    def close(self) -> None:
        """Stop observing Vault requests and every provider."""
        self._remove_observer()
        with self._lock:
            entries, self._watched = list(self._watched.values()), {}
        for entry in entries:
            entry.unsubscribe()

    # -- scraping -------------------------------------------------------------------------

    def describe(self) -> list[Metric]:
        # Names only: lets the registry detect clashes without calling status().
        return [*_Families(self.namespace).all(), *self.latency.collect()]

    def collect(self) -> Iterator[Metric]:
        f = _Families(self.namespace)
        with self._lock:
            entries = [(e, e.provider(), dict(e.errors), e.expirations)
                       for e in self._watched.values()]
        for entry, provider, error_counts, expired in entries:
            if provider is None:
                continue
            try:
                status = provider.status()
            except Exception:  # a scrape must never fail because of one provider
                logger.exception("vaultdb status for role %r failed during a scrape", entry.role)
                continue
            role = [entry.mount, status.role]
            if status.lease_seconds_left is not None:
                f.lease_left.add_metric(role, max(0.0, status.lease_seconds_left))
            if status.token_seconds_left is not None:
                f.token_left.add_metric(role, max(0.0, status.token_seconds_left))
            if status.generation is not None:
                f.generation.add_metric(role, status.generation)
            f.healthy.add_metric(role, 1.0 if status.healthy else 0.0)
            f.logins.add_metric(role, status.logins)
            f.renewals.add_metric(role, status.renewals)
            f.rotations.add_metric(role, status.rotations)
            f.revocations.add_metric(role, status.revocations)
            f.expirations.add_metric(role, expired)
            for kind, count in sorted(error_counts.items()):
                f.errors.add_metric([entry.mount, status.role, kind], count)
        yield from f.all()
        yield from self.latency.collect()


class _Families:
    """The metric families of one scrape (fresh each time, as custom collectors do)."""

    def __init__(self, n: str) -> None:
        role = ["mount", "role"]
        self.lease_left = GaugeMetricFamily(
            f"{n}_lease_seconds_left", "Seconds until the current credentials' deadline "
            "(the earlier of lease and token expiry).", labels=role)
        self.token_left = GaugeMetricFamily(
            f"{n}_token_seconds_left", "Seconds until the Vault login token expires.",
            labels=role)
        self.generation = GaugeMetricFamily(
            f"{n}_generation", "Generation of the current credentials (bumped by every "
            "rotation).", labels=role)
        self.healthy = GaugeMetricFamily(
            f"{n}_healthy", "1 while valid credentials are held, else 0.", labels=role)
        self.logins = CounterMetricFamily(f"{n}_logins", "Vault logins.", labels=role)
        self.renewals = CounterMetricFamily(f"{n}_renewals", "Lease renewals.", labels=role)
        self.rotations = CounterMetricFamily(
            f"{n}_rotations", "Credentials replaced by fresh ones.", labels=role)
        self.revocations = CounterMetricFamily(f"{n}_revocations", "Leases revoked.",
                                               labels=role)
        self.expirations = CounterMetricFamily(
            f"{n}_expirations", "Credentials that ran out before they could be replaced.",
            labels=role)
        self.errors = CounterMetricFamily(
            f"{n}_errors", "Failed Vault operations by vaultdb error class.",
            labels=["mount", "role", "kind"])

    def all(self) -> list[Metric]:
        return [self.lease_left, self.token_left, self.generation, self.healthy, self.logins,
                self.renewals, self.rotations, self.revocations, self.expirations,
                self.errors]


_collectors: dict[int, tuple[CollectorRegistry, VaultDBCollector]] = {}
_collectors_lock = threading.Lock()


def instrument(provider: CredentialProvider, *, registry: CollectorRegistry | None = None,
               ) -> Callable[[], None]:
    """Export metrics for ``provider`` in ``registry`` (default: prometheus_client's global one).

    Idempotent per provider and registry. Several providers share one collector per registry,
    told apart by the ``mount`` and ``role`` labels. Returns a function that stops reporting
    on ``provider``.
    """
    target: CollectorRegistry = REGISTRY if registry is None else registry
    with _collectors_lock:
        found = _collectors.get(id(target))
        if found is None or found[0] is not target:
            collector = VaultDBCollector()
            target.register(collector)
            _collectors[id(target)] = (target, collector)
        else:
            collector = found[1]
    return collector.watch(provider)


def uninstrument_registry(registry: CollectorRegistry | None = None) -> None:
    """Remove vaultdb's collector from ``registry`` altogether (mainly for tests)."""
    target: CollectorRegistry = REGISTRY if registry is None else registry
    with _collectors_lock:
        found = _collectors.pop(id(target), None)
    if found is not None and found[0] is target:
        target.unregister(found[1])
        found[1].close()
