"""A simulated Vault/OpenBao on a virtual clock: an :class:`~vaultdb._http.Exchange`.

The lifetime simulation plugs :class:`SimVault` under :class:`~vaultdb._http.VaultHTTP`, so
headers, JSON, redirects, error classification and retries above it run for real while hours
of a process's life pass in milliseconds. It keeps only the Vault semantics vaultdb depends on,
each checked against OpenBao 2.7.2 (``tests/sim/test_simvault_conformance.py`` runs the same
scenario against a real dev server):

* tokens: TTL, the auth role's max TTL, explicit max TTL, periodic tokens, renewability,
  ``lookup-self``/``renew-self``/``revoke-self``; a dead or unknown token gets 403
  ``permission denied`` everywhere a token is needed;
* leases: ``<mount>/creds/<role>`` creates a user and a lease (role ``default_ttl`` and
  ``max_ttl``), ``sys/leases/renew`` caps at ``max_ttl`` with OpenBao's warning text and
  whole-second arithmetic, answers 400 ``lease not found`` once the lease is gone, and 400
  ``past the max TTL`` in the last second; ``sys/leases/revoke`` answers 204 even for an
  unknown lease; a token's death (expiry or revocation) revokes every lease it created;
* static roles (``static-creds``) whose password rotates every ``rotation_period``;
* a dev-mode restart loses every token and lease (their database users are never dropped),
  sealing answers 503 ``Vault is sealed``, a leaderless cluster 500.

Faults come from a seeded :class:`FaultPlan` (time windows and per-request rates). Every
effect happens at the request's arrival (``clock.monotonic()``); the answer comes back after a
latency slept on the clock, never past the request's deadline. Everything that happens is
written to the :class:`Ledger` for the harness's invariants. No I/O, threads or crypto: a
request costs a few microseconds, so the harness can run thousands of lifetimes a minute.
"""

from __future__ import annotations

import base64
import heapq
import json
import math
import random
import time as _time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ..._clock import Clock
from ..._http import RawResponse, TransportError

__all__ = [
    "ANSWER_FAULTS",
    "REQUEST_FAULTS",
    "WINDOW_FAULTS",
    "AuthMount",
    "DynamicRole",
    "FaultPlan",
    "LeaseRecord",
    "Ledger",
    "RequestRecord",
    "SimConfig",
    "SimVault",
    "StaticRole",
    "TokenRecord",
    "TokenSpec",
    "Window",
]

#: Faults answered with an HTTP status and no effect on Vault's state.
ANSWER_FAULTS = ("sealed", "leaderless", "error500", "bad_gateway", "ratelimit", "stale412",
                 "redirect")
#: Faults a :class:`Window` can hold: every request in the window gets it.
#: ``restart`` loses all state at the window's start and refuses connections until its end.
WINDOW_FAULTS = ("refused", "blackhole", "lost_reply", "slow", "sealed", "leaderless",
                 "error500", "bad_gateway", "ratelimit", "stale412", "restart")
#: Faults drawn per request (:attr:`FaultPlan.rates`).
REQUEST_FAULTS = ("refused", "blackhole", "lost_reply", "slow", "truncated", "truncated_json",
                  "weird_number", "error500", "bad_gateway", "ratelimit", "stale412",
                  "redirect")

_DAY = 86400
_JSON: Mapping[str, str] = MappingProxyType({"content-type": "application/json"})
_NOT_FOUND = "lease not found"
_DENIED = "permission denied"
_DENIED_ACL = "1 error occurred:\n\t* permission denied\n\n"
_SEALED = "Vault is sealed"
_LEADERLESS = "local node not active but active cluster node not found"
#: Not sent by OpenBao (it has no consistency headers); Vault Enterprise's standby text.
_STALE = "required index state not present"
_PAST_MAX_LEASE = ("failed to renew entry: resp: (*logical.Response)(nil) err: "
                   "past the max TTL, cannot renew")
_PAST_MAX_TOKEN = "1 error occurred:\n\t* past the max TTL, cannot renew\n\n"
_WEIRD: tuple[Any, ...] = (math.nan, math.inf, 1e20, -5, "3600", None)


# -- configuration ---------------------------------------------------------------------------

@dataclass(frozen=True)
class TokenSpec:
    """The token an auth role issues (seconds; 0 means "not set", as in Vault)."""

    ttl: int = 3600
    #: The auth role's ``token_max_ttl`` (0: the system maximum, 768 h).
    max_ttl: int = 0
    explicit_max_ttl: int = 0
    #: A periodic token renews to ``period`` each time, with no maximum unless explicit.
    period: int = 0
    renewable: bool = True
    policies: tuple[str, ...] = ("default", "vaultdb-app")


@dataclass(frozen=True)
class AuthMount:
    """An auth method mounted at ``auth/<mount>``: its kind decides which login body it takes."""

    kind: str = "kubernetes"  # kubernetes, jwt or approle
    token: TokenSpec = TokenSpec()


@dataclass(frozen=True)
class DynamicRole:
    """``<mount>/roles/<name>``: 0 means the system default/maximum (768 h)."""

    default_ttl: int = 3600
    max_ttl: int = _DAY


@dataclass(frozen=True)
class StaticRole:
    """``<mount>/static-roles/<name>``: Vault rotates the password every ``rotation_period``."""

    username: str
    rotation_period: int = 3600


def _default_auth() -> dict[str, AuthMount]:
    return {"kubernetes": AuthMount("kubernetes"), "jwt": AuthMount("jwt"),
            "approle": AuthMount("approle")}


@dataclass(frozen=True)
class SimConfig:
    """Everything a :class:`SimVault` is, except its clock, randomness and faults' draws."""

    #: Base URLs this Vault answers on (several for redirects); any other host is unreachable.
    addresses: tuple[str, ...] = ("http://vault.sim:8200",)
    mount: str = "database"
    roles: Mapping[str, DynamicRole] = field(default_factory=lambda: {"app": DynamicRole()})
    static_roles: Mapping[str, StaticRole] = field(default_factory=dict)
    auth: Mapping[str, AuthMount] = field(default_factory=_default_auth)
    system_default_ttl: int = 768 * 3600
    system_max_ttl: int = 768 * 3600
    #: Uniform range of a normal answer's latency, seconds.
    latency: tuple[float, float] = (0.002, 0.02)
    #: A refused connection fails after this long (never zero: virtual time must move on).
    refused_latency: float = 0.001
    faults: FaultPlan | None = None
    #: Another process's tokens (each with ``foreign_leases`` leases on the first role's
    #: path, as long-lived as the token), created at start and again after each restart, so
    #: a revocation of something not the process's own is detectable.
    foreign_tokens: int = 2
    foreign_leases: int = 2
    foreign_token: TokenSpec = TokenSpec(ttl=7 * _DAY, max_ttl=30 * _DAY)
    #: Send an ``X-Vault-Index`` header (base64 JSON) on every answer, as a Raft cluster does.
    index_header: bool = False
    #: Where ``redirect`` faults point (default: the other addresses, else this one).
    redirect_to: tuple[str, ...] = ()
    version: str = "2.7.2"
    #: Vault truncates times to whole seconds of its wall clock: this offset (seconds, in
    #: [0, 1)) is added to monotonic time before truncating (None: drawn from the rng).
    second_phase: float | None = None


# -- faults ----------------------------------------------------------------------------------

def _num(value: float) -> str:
    """The shortest text that reads back as the same float."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


@dataclass(frozen=True)
class Window:
    """Every request arriving in ``[start, end)`` (virtual seconds) gets fault ``kind``."""

    kind: str
    start: float
    end: float

    def __post_init__(self) -> None:
        if self.kind not in WINDOW_FAULTS:
            raise ValueError(f"unknown window fault {self.kind!r}; one of {WINDOW_FAULTS}")
        if not self.end >= self.start:
            raise ValueError(f"window {self.kind} ends before it starts")


@dataclass(frozen=True)
class FaultPlan:
    """A seeded fault schedule: outage windows plus a probability per request fault kind.

    :meth:`describe` prints it in a form :meth:`parse` reads back, so a failing lifetime's
    trace replays with the same plan (the per-request draws come from the SimVault's rng).
    """

    windows: tuple[Window, ...] = ()
    rates: Mapping[str, float] = field(default_factory=dict)
    #: A ``slow`` answer takes this many times the time left to its deadline (above 1: late).
    slow: tuple[float, float] = (0.3, 2.0)

    def __post_init__(self) -> None:
        for kind, rate in self.rates.items():
            if kind not in REQUEST_FAULTS:
                raise ValueError(f"unknown request fault {kind!r}; one of {REQUEST_FAULTS}")
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"rate of {kind} must be within [0, 1], not {rate!r}")
        if sum(self.rates.values()) > 1.0:
            raise ValueError("request fault rates add up to more than 1")

    @classmethod
    def random(cls, rng: random.Random, horizon: float, *, max_windows: int = 4,
               max_window: float = 120.0, rate: float = 0.02,
               kinds: Iterable[str] = REQUEST_FAULTS,
               window_kinds: Iterable[str] = WINDOW_FAULTS) -> FaultPlan:
        """A plan over ``[0, horizon)``: up to ``max_windows`` outages, request faults at
        ``rate`` in total spread over a random subset of ``kinds``."""
        wkinds, rkinds = sorted(window_kinds), sorted(kinds)
        windows = []
        for _ in range(rng.randint(0, max_windows) if wkinds else 0):
            start = round(rng.uniform(0.0, horizon), 3)
            length = round(rng.uniform(1.0, max_window), 3)
            windows.append(Window(rng.choice(wkinds), start, start + length))
        windows.sort(key=lambda w: (w.start, w.kind))
        chosen = [k for k in rkinds if rng.random() < 0.5]
        weights = [rng.random() for _ in chosen]
        total = sum(weights) or 1.0
        rates = {k: round(rate * w / total, 6) for k, w in zip(chosen, weights, strict=True)}
        return cls(tuple(windows), rates)

    def describe(self) -> str:
        """Compact text, e.g. ``windows=sealed@10-25,restart@300.5-310;rates=slow:0.001``."""
        wins = ",".join(f"{w.kind}@{_num(w.start)}-{_num(w.end)}" for w in self.windows)
        rates = ",".join(f"{k}:{_num(v)}" for k, v in sorted(self.rates.items()) if v)
        return f"windows={wins};rates={rates};slow={_num(self.slow[0])}-{_num(self.slow[1])}"

    @classmethod
    def parse(cls, text: str) -> FaultPlan:
        """The plan :meth:`describe` printed."""
        parts = dict(p.split("=", 1) for p in text.strip().split(";") if p)
        windows = []
        for item in filter(None, parts.get("windows", "").split(",")):
            kind, span = item.split("@")
            start, end = span.split("-")
            windows.append(Window(kind, float(start), float(end)))
        rates = {k: float(v) for k, v in
                 (r.split(":") for r in filter(None, parts.get("rates", "").split(",")))}
        lo, hi = parts.get("slow", "0.3-2").split("-")
        return cls(tuple(windows), rates, (float(lo), float(hi)))


# -- the ledger ------------------------------------------------------------------------------

@dataclass(slots=True)
class TokenRecord:
    """One token's life. ``why`` is revoked (revoke-self), expired or lost-in-restart."""

    accessor: str
    owner: str
    path: str
    created: float
    period: int
    explicit_max_ttl: int
    renewable: bool
    expires: float
    #: Latest possible expiry (``inf`` for a periodic token without explicit max); Vault's
    #: whole-second arithmetic can put ``expires`` up to one second past it.
    max_end: float
    revoked_at: float | None = None
    why: str | None = None
    revoked_by: str | None = None
    renewals: list[float] = field(default_factory=list)

    def alive(self, at: float) -> bool:
        return self.revoked_at is None and at < self.expires


@dataclass(slots=True)
class LeaseRecord:
    """One dynamic lease and its database user.

    ``why`` is revoked (by request; ``revoked_by`` is the token's accessor), expired,
    token-death (its token expired or was revoked) or lost-in-restart (the user is never
    dropped: ``dropped_at`` stays ``None``).
    """

    lease_id: str
    role: str
    username: str
    owner: str
    creator: str
    created: float
    expires: float
    max_end: float
    ended_at: float | None = None
    why: str | None = None
    revoked_by: str | None = None
    dropped_at: float | None = None
    #: (time, granted TTL) of each successful renewal.
    renewals: list[tuple[float, int]] = field(default_factory=list)

    def alive(self, at: float) -> bool:
        return self.ended_at is None and at < self.expires


@dataclass(slots=True)
class RequestRecord:
    """One request: ``outcome`` is the HTTP status, or unreachable/timeout/protocol."""

    t: float
    host: str
    method: str
    path: str
    accessor: str | None
    fault: str = ""
    #: Whether the request changed Vault's state (a lost reply may have).
    applied: bool = False
    outcome: int | str = 0
    done: float = 0.0


class Ledger:
    """Everything the simulated Vault saw and did, for the harness's invariants."""

    def __init__(self) -> None:
        self.tokens: dict[str, TokenRecord] = {}  # by accessor
        self.leases: dict[str, LeaseRecord] = {}  # by lease id
        self.requests: list[RequestRecord] = []
        self.restarts: list[float] = []
        #: (time, role, password index) of each static password handed out.
        self.static_reads: list[tuple[float, str, int]] = []

    def leases_of(self, owner: str) -> list[LeaseRecord]:
        return [r for r in self.leases.values() if r.owner == owner]

    def tokens_of(self, owner: str) -> list[TokenRecord]:
        return [r for r in self.tokens.values() if r.owner == owner]

    def live_leases(self, at: float, owner: str | None = None) -> list[LeaseRecord]:
        return [r for r in self.leases.values()
                if r.alive(at) and (owner is None or r.owner == owner)]

    def max_requests_per(self, window: float = 60.0) -> int:
        """The most requests that arrived within any ``window`` seconds."""
        times = [r.t for r in self.requests]
        best, lo = 0, 0
        for hi, t in enumerate(times):
            while t - times[lo] >= window:
                lo += 1
            best = max(best, hi - lo + 1)
        return best

    def trace(self, last: int | None = None) -> str:
        """One line per request (the newest ``last``), for a failing seed's report."""
        rows = self.requests if last is None else self.requests[-last:]
        return "\n".join(
            f"{r.t:12.3f} {r.method:4} {r.path:32} -> {r.outcome!s:11} "
            f"{r.fault or '-':14} {'applied' if r.applied else ''} by={r.accessor or '-'}"
            for r in rows)


# -- Vault's state ---------------------------------------------------------------------------

def _human(seconds: int) -> str:
    """Go's ``humanDuration`` (``1m40s``, ``10s``, ``1h``), as in Vault's TTL warnings."""
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    text = f"{h}h{m}m{s}s" if h else f"{m}m{s}s" if m else f"{s}s"
    if text.endswith("m0s"):
        text = text[:-2]
    if "h0m" in text:
        text = text.replace("h0m", "h", 1)
    return text


class _PastMax(Exception):
    """CalculateTTL's "past the max TTL, cannot renew"."""


@dataclass(slots=True)
class _Token:
    secret: str
    record: TokenRecord
    spec: TokenSpec
    issue: float
    creation_ttl: int
    leases: set[str] = field(default_factory=set)


@dataclass(slots=True)
class _Lease:
    record: LeaseRecord
    role: DynamicRole
    issue: float
    token: _Token


class _State:
    """Tokens, leases and their expiry, with OpenBao's TTL arithmetic (framework.CalculateTTL)."""

    def __init__(self, config: SimConfig, ids: random.Random, ledger: Ledger) -> None:
        self.config = config
        self.ids = ids
        self.ledger = ledger
        #: Vault truncates times to its wall clock's whole seconds: where they fall is random.
        drawn = ids.random()
        self.phase = drawn if config.second_phase is None else config.second_phase % 1.0
        self.tokens: dict[str, _Token] = {}  # live tokens by secret
        self.accessors: dict[str, str] = {}  # every token secret ever issued -> accessor
        self.leases: dict[str, _Lease] = {}  # live leases by id
        self.heap: list[tuple[float, int, str]] = []
        self.seq = 0
        self.index = 0

    def _sec(self, t: float) -> int:
        return math.floor(t + self.phase)

    def _push(self, when: float, key: str) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (when, self.seq, key))

    def _id(self, n: int = 24) -> str:
        """``n`` random hex digits (Vault's ids are base62; nothing here depends on that)."""
        return f"{self.ids.getrandbits(4 * n):0{n}x}"

    def calculate_ttl(self, increment: int, backend_ttl: int, period: int, backend_max: int,
                      explicit_max: int, issue: float, now: float) -> tuple[int, str | None]:
        max_ttl = self.config.system_max_ttl
        if 0 < backend_max < max_ttl:
            max_ttl = backend_max
        if 0 < explicit_max < max_ttl:
            max_ttl = explicit_max
        warning = None
        if period > 0:
            if period > max_ttl:
                warning = (f'period of "{_human(period)}" exceeded the effective max_ttl of '
                           f'"{_human(max_ttl)}"; period value is capped accordingly')
                period = max_ttl
            ttl, limit = period, (explicit_max if explicit_max > 0 else None)
        else:
            ttl = increment or backend_ttl or self.config.system_default_ttl
            limit = max_ttl
        if limit is not None:
            left = self._sec(issue) + limit - self._sec(now)
            if left <= 0:
                raise _PastMax
            if ttl > left:
                warning = (f'TTL of "{_human(ttl)}" exceeded the effective max_ttl of '
                           f'"{_human(left)}"; TTL value is capped accordingly')
                ttl = left
        return ttl, warning

    def _max_end(self, issue: float, limit: int | None) -> float:
        return math.inf if limit is None else self._sec(issue) - self.phase + limit

    # -- tokens --

    def new_token(self, spec: TokenSpec, owner: str, path: str, now: float) -> _Token:
        ttl, _ = self.calculate_ttl(0, spec.ttl, spec.period, spec.max_ttl,
                                    spec.explicit_max_ttl, now, now)
        limit = self._token_limit(spec)
        secret, accessor = f"s.{self._id()}", self._id()
        record = TokenRecord(accessor, owner, path, now, spec.period, spec.explicit_max_ttl,
                             spec.renewable, now + ttl, self._max_end(now, limit))
        token = _Token(secret, record, spec, now, ttl)
        self.tokens[secret] = token
        self.accessors[secret] = accessor
        self.ledger.tokens[accessor] = record
        self._push(record.expires, secret)
        self.index += 1
        return token

    def _token_limit(self, spec: TokenSpec) -> int | None:
        if spec.period > 0:
            return spec.explicit_max_ttl or None
        limits = [v for v in (self.config.system_max_ttl, spec.max_ttl, spec.explicit_max_ttl)
                  if v > 0]
        return min(limits)

    def renew_token(self, token: _Token, increment: int, now: float) -> tuple[int, str | None]:
        spec = token.spec
        ttl, warning = self.calculate_ttl(increment, spec.ttl, spec.period, spec.max_ttl,
                                          spec.explicit_max_ttl, token.issue, now)
        token.record.expires = now + ttl
        token.record.renewals.append(now)
        self._push(token.record.expires, token.secret)
        self.index += 1
        return ttl, warning

    def end_token(self, token: _Token, at: float, why: str, by: str | None = None) -> None:
        record = token.record
        record.revoked_at, record.why, record.revoked_by = at, why, by
        del self.tokens[token.secret]
        for lease_id in sorted(token.leases):
            self.end_lease(self.leases[lease_id], at, "lost-in-restart" if why ==
                           "lost-in-restart" else "token-death")
        self.index += 1

    def live_token(self, secret: str | None) -> _Token | None:
        return self.tokens.get(secret) if secret else None

    # -- leases --

    def new_lease(self, name: str, role: DynamicRole, token: _Token, now: float) -> _Lease:
        ttl, _ = self.calculate_ttl(0, role.default_ttl, 0, role.max_ttl, 0, now, now)
        lease_id = f"{self.config.mount}/creds/{name}/{self._id()}"
        kind = token.record.path.split("/")[1] if token.record.path.startswith("auth/") else ""
        display = "token" if kind in ("", "token") else kind[:8]
        username = f"v-{display}-{name[:8]}-{self._id(20)}-{self._sec(now)}"
        limit = min(v for v in (self.config.system_max_ttl, role.max_ttl) if v > 0)
        record = LeaseRecord(lease_id, name, username, token.record.owner,
                             token.record.accessor, now, now + ttl, self._max_end(now, limit))
        lease = _Lease(record, role, now, token)
        self.leases[lease_id] = lease
        token.leases.add(lease_id)
        self.ledger.leases[lease_id] = record
        self._push(record.expires, lease_id)
        self.index += 1
        return lease

    def renew_lease(self, lease: _Lease, increment: int, now: float) -> tuple[int, str | None]:
        role = lease.role
        ttl, warning = self.calculate_ttl(increment, role.default_ttl, 0, role.max_ttl, 0,
                                          lease.issue, now)
        lease.record.expires = now + ttl
        lease.record.renewals.append((now, ttl))
        self._push(lease.record.expires, lease.record.lease_id)
        self.index += 1
        return ttl, warning

    def end_lease(self, lease: _Lease, at: float, why: str, by: str | None = None) -> None:
        record = lease.record
        record.ended_at, record.why, record.revoked_by = at, why, by
        if why != "lost-in-restart":
            record.dropped_at = at
        del self.leases[record.lease_id]
        lease.token.leases.discard(record.lease_id)
        self.index += 1

    # -- time --

    def expire(self, now: float) -> None:
        """Apply every expiry due by ``now``, each at its own time (Vault's expiration manager)."""
        heap = self.heap
        while heap and heap[0][0] <= now:
            when, _, key = heapq.heappop(heap)
            lease = self.leases.get(key)
            if lease is not None:
                if lease.record.expires == when:
                    self.end_lease(lease, when, "expired")
                continue
            token = self.tokens.get(key)
            if token is not None and token.record.expires == when:
                self.end_token(token, when, "expired")

    def lose_everything(self, at: float) -> None:
        for token in list(self.tokens.values()):
            self.end_token(token, at, "lost-in-restart")
        self.heap.clear()
        self.index = 0


# -- the simulated server --------------------------------------------------------------------

def _split(url: str) -> tuple[str, str, str]:
    """``(base, path after /v1/, query)``."""
    cut = url.find("/v1/")
    if cut < 0:
        return url, "", ""
    base, rest = url[:cut], url[cut + 4:]
    path, _, query = rest.partition("?")
    return base, path, query


def _int(value: Any) -> int | None:
    """Vault's duration field: an integer number of seconds or a Go duration; None if bad."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.endswith("s") and text[:-1].isdigit():
            text = text[:-1]
        if text.lstrip("-").isdigit():
            return int(text)
    return None


Handler = Callable[[str, str, dict[str, Any], str | None, float], tuple[int, Any]]


class _Endpoints:
    """Vault's HTTP API over :class:`_State`: one request in, its effects and its answer out."""

    def __init__(self, clock: Clock, config: SimConfig, state: _State, cluster_id: str
                 ) -> None:
        self.clock = clock
        self.config = config
        self.state = state
        self.cluster_id = cluster_id
        self.epoch = clock.monotonic()  # static passwords rotate from here (and restarts)
        self.static_salt = state._id(8)
        self.requests = 0
        self.routes: dict[str, Handler] = {
            "auth/token/lookup-self": self._lookup_self,
            "auth/token/renew-self": self._renew_self,
            "auth/token/revoke-self": self._revoke_self,
            "sys/leases/renew": self._renew,
            "sys/leases/revoke": self._revoke,
        }

    def static_password(self, role: str, at: float | None = None) -> str:
        """The password static role ``role`` has at ``at`` (default now)."""
        at = self.clock.monotonic() if at is None else at
        spec = self.config.static_roles[role]
        index = math.floor((at - self.epoch) / spec.rotation_period)
        return f"static-{self.static_salt}-{len(self.state.ledger.restarts)}-{role}-{index}"

    def route(self, method: str, path: str, query: str, secret: str | None,
               body: bytes | None, now: float) -> tuple[int, Any]:
        fields: dict[str, Any] = {}
        if body:
            try:
                parsed = json.loads(body.decode("utf-8", "replace"))
            except ValueError:
                return _error(400, "failed to decode JSON input: invalid character")
            fields = parsed if isinstance(parsed, dict) else {}
        if path == "sys/health":
            return self._health(method, query, fields, secret, now)
        handler = self.routes.get(path)
        if handler is None and path.startswith("auth/") and path.endswith("/login"):
            return self._login(method, path, fields, now)
        token = self.state.live_token(secret)
        if token is None:
            return _error(403, _DENIED)
        if handler is not None:
            return handler(method, query, fields, secret, now)
        prefix, _, role = path.rpartition("/")
        if method == "GET" and prefix == f"{self.config.mount}/creds":
            return self._creds(role, token, now)
        if method == "GET" and prefix == f"{self.config.mount}/static-creds":
            return self._static_creds(role, now)
        return _error(403, _DENIED_ACL)

    def _envelope(self, **fields: Any) -> dict[str, Any]:
        self.requests += 1
        answer: dict[str, Any] = {
            "request_id": f"00000000-0000-4000-8000-{self.requests:012x}",
            "lease_id": "", "renewable": False, "lease_duration": 0, "data": None,
            "wrap_info": None, "warnings": None, "auth": None}
        answer.update(fields)
        return answer

    def _auth(self, token: _Token, ttl: int, warning: str | None) -> dict[str, Any]:
        spec = token.spec
        return self._envelope(warnings=[warning] if warning else None, auth={
            "client_token": token.secret, "accessor": token.record.accessor,
            "policies": list(spec.policies), "token_policies": list(spec.policies),
            "metadata": None, "lease_duration": ttl, "renewable": spec.renewable,
            "entity_id": "", "token_type": "service", "orphan": True,
            "mfa_requirement": None, "num_uses": 0})

    def _health(self, method: str, query: str, fields: dict[str, Any], secret: str | None,
                now: float) -> tuple[int, Any]:
        return self.health_answer(query, sealed=False, standby=False)

    def health_answer(self, query: str, *, sealed: bool, standby: bool) -> tuple[int, Any]:
        params = dict(p.partition("=")[::2] for p in query.split("&") if p)
        status = 200
        if sealed:
            status = int(params.get("sealedcode") or 503)
        elif standby and params.get("standbyok") != "true":
            status = int(params.get("standbycode") or 429)
        payload: dict[str, Any] = {
            "initialized": True, "sealed": sealed, "standby": standby or sealed,
            "replication_performance_mode": "disabled", "replication_dr_mode": "disabled",
            "server_time_utc": int(self.clock.time()), "version": self.config.version}
        if not sealed:
            payload["cluster_name"] = "vault-cluster-sim"
            payload["cluster_id"] = self.cluster_id
        return status, payload

    def _login(self, method: str, path: str, fields: dict[str, Any], now: float
               ) -> tuple[int, Any]:
        mount = self.config.auth.get(path[len("auth/"):-len("/login")])
        if mount is None or method not in ("POST", "PUT"):
            return _error(403, _DENIED)
        if mount.kind == "approle":
            if not fields.get("role_id"):
                return _error(500, "missing role_id")
            if not fields.get("secret_id"):
                return _error(400, "invalid role or secret ID")
        else:
            if not fields.get("jwt"):
                return _error(400, "missing token" if mount.kind == "jwt" else "missing jwt")
            if not fields.get("role"):
                return _error(400, "missing role")
        token = self.state.new_token(mount.token, "process", path, now)
        return 200, self._auth(token, round(token.record.expires - now), None)

    def _lookup_self(self, method: str, query: str, fields: dict[str, Any],
                     secret: str | None, now: float) -> tuple[int, Any]:
        token = self.state.live_token(secret)
        if method != "GET" or token is None:
            return _error(403, _DENIED_ACL)
        record, spec = token.record, token.spec
        data: dict[str, Any] = {
            "accessor": record.accessor, "creation_time": self.state._sec(token.issue),
            "creation_ttl": token.creation_ttl, "display_name": record.path.split("/")[1],
            "entity_id": "", "expire_time": self._iso(record.expires),
            "explicit_max_ttl": spec.explicit_max_ttl, "id": token.secret,
            "issue_time": self._iso(token.issue), "meta": None, "num_uses": 0,
            "orphan": True, "path": record.path, "policies": list(spec.policies),
            "renewable": spec.renewable, "ttl": max(0, round(record.expires - now)),
            "type": "service"}
        if spec.period:
            data["period"] = spec.period
        return 200, self._envelope(data=data)

    def _iso(self, t: float) -> str:
        wall = self.clock.time() + (t - self.clock.monotonic())
        stamp = _time.strftime("%Y-%m-%dT%H:%M:%S", _time.gmtime(wall))
        return f"{stamp}.{int((wall % 1) * 1e9):09d}Z"

    def _renew_self(self, method: str, query: str, fields: dict[str, Any],
                    secret: str | None, now: float) -> tuple[int, Any]:
        token = self.state.live_token(secret)
        if method not in ("POST", "PUT") or token is None:
            return _error(403, _DENIED_ACL)
        increment = _increment(fields)
        if isinstance(increment, tuple):
            return increment
        if not token.spec.renewable:
            return _error(400, "lease is not renewable")
        try:
            ttl, warning = self.state.renew_token(token, increment, now)
        except _PastMax:
            return _error(500, _PAST_MAX_TOKEN)
        return 200, self._auth(token, ttl, warning)

    def _revoke_self(self, method: str, query: str, fields: dict[str, Any],
                     secret: str | None, now: float) -> tuple[int, Any]:
        token = self.state.live_token(secret)
        if method not in ("POST", "PUT") or token is None:
            return _error(403, _DENIED_ACL)
        self.state.end_token(token, now, "revoked", token.record.accessor)
        return 204, None

    def _creds(self, role: str, token: _Token, now: float) -> tuple[int, Any]:
        spec = self.config.roles.get(role)
        if spec is None:
            return _error(400, f"unknown role: {role}")
        lease = self.state.new_lease(role, spec, token, now)
        record = lease.record
        return 200, self._envelope(
            lease_id=record.lease_id, renewable=True,
            lease_duration=round(record.expires - now),
            data={"password": f"pw-{self.state._id(20)}", "username": record.username})

    def _static_creds(self, role: str, now: float) -> tuple[int, Any]:
        spec = self.config.static_roles.get(role)
        if spec is None:
            return _error(400, f"unknown role: {role}")
        period = spec.rotation_period
        index = math.floor((now - self.epoch) / period)
        rotated = self.epoch + index * period
        self.state.ledger.static_reads.append((now, role, index))
        return 200, self._envelope(data={
            "last_vault_rotation": self._iso(rotated),
            "password": self.static_password(role, now), "rotation_period": period,
            "ttl": max(0, math.floor(rotated + period - now)), "username": spec.username})

    def _renew(self, method: str, query: str, fields: dict[str, Any], secret: str | None,
               now: float) -> tuple[int, Any]:
        if method not in ("POST", "PUT"):
            return _error(403, _DENIED_ACL)
        lease_id = fields.get("lease_id")
        if not lease_id or not isinstance(lease_id, str):
            return _error(400, "lease_id must be specified")
        increment = _increment(fields)
        if isinstance(increment, tuple):
            return increment
        lease = self.state.leases.get(lease_id)
        if lease is None:
            return _error(400, _NOT_FOUND)
        try:
            ttl, warning = self.state.renew_lease(lease, increment, now)
        except _PastMax:
            return _error(400, _PAST_MAX_LEASE)
        return 200, self._envelope(lease_id=lease_id, renewable=True, lease_duration=ttl,
                                   warnings=[warning] if warning else None)

    def _revoke(self, method: str, query: str, fields: dict[str, Any], secret: str | None,
                now: float) -> tuple[int, Any]:
        if method not in ("POST", "PUT"):
            return _error(403, _DENIED_ACL)
        lease_id = fields.get("lease_id")
        if not lease_id or not isinstance(lease_id, str):
            return _error(400, "lease_id must be specified")
        lease = self.state.leases.get(lease_id)
        if lease is not None:  # unknown or already revoked: 204 all the same (seen in OpenBao)
            self.state.end_lease(lease, now, "revoked", self.state.accessors.get(secret or ""))
        return 204, None


class SimVault:
    """A simulated Vault: call it as an :class:`~vaultdb._http.Exchange`.

    ``SimVault(clock, rng, config)``; everything it does is deterministic given ``rng``'s
    seed and the sequence of calls, and recorded in :attr:`ledger`. Operator actions:
    :meth:`issue_token` (a handed-in ``VAULT_TOKEN``), :meth:`restart`, :meth:`seal`,
    :meth:`unseal`, :meth:`set_leaderless`; :meth:`settle` applies expiries up to now.
    """

    def __init__(self, clock: Clock, rng: random.Random, config: SimConfig | None = None
                 ) -> None:
        self.clock = clock
        self.config = config = config or SimConfig()
        self.plan = config.faults or FaultPlan()
        self.ledger = Ledger()
        # Separate streams: one more token or lease never shifts the fault draws.
        self._faults = random.Random(rng.getrandbits(64))
        self._state = _State(config, random.Random(rng.getrandbits(64)), self.ledger)
        self._hosts = frozenset(a.rstrip("/") for a in config.addresses)
        self._redirects = tuple(config.redirect_to) or tuple(
            a for a in config.addresses[1:]) or tuple(config.addresses)
        self._cluster_id = self._state._id(16)
        self._edges: list[tuple[float, str]] = []
        edge = 0.0
        for kind, rate in sorted(self.plan.rates.items()):
            if rate > 0:
                edge += rate
                self._edges.append((edge, kind))
        self._windows = sorted(self.plan.windows, key=lambda w: (w.start, w.kind))
        self._restarts = [w.start for w in self._windows if w.kind == "restart"]
        self._down_until = -math.inf
        self._sealed = False
        self._leaderless = False
        self._api = _Endpoints(clock, config, self._state, self._cluster_id)
        self._seed_foreign(clock.monotonic())

    def _seed_foreign(self, now: float) -> None:
        """Another process's tokens and leases (on the first role's path, living as long as
        the foreign token: that process keeps renewing them)."""
        config = self.config
        first_role = next(iter(config.roles), None)
        spec = config.foreign_token
        role = DynamicRole(spec.ttl, spec.max_ttl)
        for _ in range(config.foreign_tokens):
            token = self._state.new_token(spec, "foreign", "auth/token/create", now)
            for _ in range(config.foreign_leases if first_role else 0):
                assert first_role is not None
                self._state.new_lease(first_role, role, token, now)

    def __repr__(self) -> str:
        return f"SimVault(addresses={self.config.addresses!r}, plan={self.plan.describe()!r})"

    # -- operator actions --

    def issue_token(self, spec: TokenSpec | None = None, *, owner: str = "process"
                    ) -> tuple[str, str]:
        """``auth/token/create`` by an operator: ``(token, accessor)`` (e.g. VAULT_TOKEN)."""
        now = self.clock.monotonic()
        self.settle(now)
        token = self._state.new_token(spec or TokenSpec(), owner, "auth/token/create", now)
        return token.secret, token.record.accessor

    def restart(self, down_for: float = 0.0) -> None:
        """A dev-mode restart now: every token and lease lost; refused for ``down_for`` s."""
        now = self.clock.monotonic()
        self.settle(now)
        self._restart(now)
        self._down_until = now + down_for

    def seal(self) -> None:
        self._sealed = True

    def unseal(self) -> None:
        self._sealed = False

    def set_leaderless(self, leaderless: bool) -> None:
        """While set, every request gets 500 "active cluster node not found"."""
        self._leaderless = leaderless

    def settle(self, now: float | None = None) -> None:
        """Apply expiries and scheduled restarts due by ``now`` (default: the clock's now)."""
        now = self.clock.monotonic() if now is None else now
        restarts = self._restarts
        while restarts and restarts[0] <= now:
            at = restarts.pop(0)
            self._state.expire(at)
            self._restart(at)
        self._state.expire(now)

    def _restart(self, at: float) -> None:
        self._state.lose_everything(at)
        self.ledger.restarts.append(at)
        self._api.epoch = at  # the operator re-creates static roles: Vault rotates at once
        self._seed_foreign(at)  # the other process logs in again

    def static_password(self, role: str, at: float | None = None) -> str:
        """The password static role ``role`` has at ``at`` (default now)."""
        return self._api.static_password(role, at)

    # -- the exchange --

    def __call__(self, method: str, url: str, headers: Mapping[str, str],
                 body: bytes | None, *, deadline: float) -> RawResponse:
        clock = self.clock
        now = clock.monotonic()
        self.settle(now)
        host, path, query = _split(url)
        secret = headers.get("X-Vault-Token") or headers.get("x-vault-token")
        record = RequestRecord(now, host, method, path,
                               self._state.accessors.get(secret) if secret else None)
        self.ledger.requests.append(record)
        left = deadline - now
        if left <= 0:
            return self._timeout(record, 0.0)
        known = host in self._hosts
        fault = self._pick_fault(now) if known else "refused"
        record.fault = fault
        if fault == "refused":
            clock.sleep(min(self.config.refused_latency, left))
            record.outcome, record.done = "unreachable", clock.monotonic()
            raise TransportError("unreachable", "ConnectionRefusedError: Connection refused"
                                 if known else "name resolution failed (unknown host)",
                                 sent=False)
        if fault == "blackhole":
            return self._timeout(record, left)
        lo, hi = self.config.latency
        latency = lo + (hi - lo) * self._faults.random()
        extra: dict[str, str] | None = None
        if fault in ANSWER_FAULTS:
            status, payload, extra = self._fault_answer(fault, host, path, query)
        else:
            status, payload = self._api.route(method, path, query, secret, body, now)
            record.applied = True
            if fault == "lost_reply":
                return self._timeout(record, left)
            if fault == "truncated":
                if latency >= left:
                    return self._timeout(record, left)
                clock.sleep(latency)
                record.outcome, record.done = "protocol", clock.monotonic()
                raise TransportError("protocol", "IncompleteRead", sent=True)
            if fault == "slow":
                lo, hi = self.plan.slow
                latency = left * (lo + (hi - lo) * self._faults.random())
            elif fault == "weird_number" and isinstance(payload, dict) and status < 300:
                self._weird(payload)
        data = b"" if payload is None else (
            payload if isinstance(payload, bytes) else json.dumps(payload).encode())
        if fault == "truncated_json" and status < 300 and data:
            data = data[: len(data) // 2]
        out = _JSON
        if extra or self.config.index_header:
            headers_out = {**_JSON, **(extra or {})}
            if self.config.index_header:
                # OpenBao 2.7's format: base64 JSON, the Raft index as a decimal string.
                state = json.dumps({"cluster": self._cluster_id,
                                    "value": str(self._state.index)})
                headers_out["x-vault-index"] = base64.b64encode(state.encode()).decode()
            out = headers_out
        if latency >= left:
            return self._timeout(record, left)
        clock.sleep(latency)
        record.outcome, record.done = status, clock.monotonic()
        return RawResponse(status, out, data)

    exchange = __call__

    def _timeout(self, record: RequestRecord, left: float) -> RawResponse:
        if left > 0:
            self.clock.sleep(left)
        record.outcome, record.done = "timeout", self.clock.monotonic()
        raise TransportError("timeout", "no answer in time", sent=True)

    def _pick_fault(self, now: float) -> str:
        if now < self._down_until:
            return "refused"
        for window in self._windows:
            if window.start > now:
                break
            if now < window.end:
                return "refused" if window.kind == "restart" else window.kind
        if self._sealed:
            return "sealed"
        if self._leaderless:
            return "leaderless"
        if self._edges:
            draw = self._faults.random()
            for edge, kind in self._edges:
                if draw < edge:
                    return kind
        return ""

    def _fault_answer(self, fault: str, host: str, path: str, query: str
                      ) -> tuple[int, Any, dict[str, str] | None]:
        if fault == "redirect":
            target = self._redirects[self._faults.randrange(len(self._redirects))]
            location = f"{target}/v1/{path}" + (f"?{query}" if query else "")
            return 307, None, {"location": location}
        if path == "sys/health" and fault in ("sealed", "leaderless"):
            status, payload = self._api.health_answer(query, sealed=fault == "sealed",
                                                  standby=True)
            return status, payload, None
        if fault == "bad_gateway":
            return 502, b"<html><body>502 Bad Gateway</body></html>", {
                "content-type": "text/html"}
        status, text = {
            "sealed": (503, _SEALED), "leaderless": (500, _LEADERLESS),
            "error500": (500, "internal error"), "stale412": (412, _STALE),
            "ratelimit": (429, f'request path "{path}": rate limit quota exceeded'),
        }[fault]
        return status, {"errors": [text]}, None

    def _weird(self, payload: dict[str, Any]) -> None:
        value = _WEIRD[self._faults.randrange(len(_WEIRD))]
        auth, data = payload.get("auth"), payload.get("data")
        if isinstance(auth, dict):
            auth["lease_duration"] = value
        elif payload.get("lease_id"):
            payload["lease_duration"] = value
        elif isinstance(data, dict) and "ttl" in data:
            data["ttl"] = value


def _error(status: int, text: str) -> tuple[int, Any]:
    return status, {"errors": [text]}


def _increment(fields: dict[str, Any]) -> int | tuple[int, Any]:
    raw = fields.get("increment", 0)
    value = _int(raw)
    if value is None:
        return _error(400, 'Field validation failed: error converting input for field '
                      f'"increment": time: invalid duration "{raw}"')
    if value < 0:
        return _error(400, 'Field validation failed: error converting input for field '
                      f'"increment": cannot provide negative value \'{value}\'')
    return value
