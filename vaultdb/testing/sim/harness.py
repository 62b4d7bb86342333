"""Whole process lifetimes of a real :class:`~vaultdb.CredentialProvider` on a virtual clock.

One :func:`run_lifetime` call draws a scenario from a seed (TTLs, login method, static or
dynamic role, a fault plan for the simulated Vault, application calls, how the process ends),
runs the real provider, engine, renewer and Vault client (HTTP included, above the transport's
:class:`~vaultdb._http.Exchange`) against :class:`~vaultdb.testing.sim.simvault.SimVault`, and
checks the invariants after every scheduling step and at the end. A violation raises
:class:`InvariantViolation` whose message holds the seed and a trace that replays it::

    python -m vaultdb.testing.sim --seed 1234 --trace

Invariants (see docs/concepts.md, "Lifetime simulation"):

* ``credentials()`` only returns credentials that Vault still honours;
* at most one credentials request in flight per provider;
* every lease the process created is ended by the end of its life: revoked by the process, gone
  with a token the process revoked, or lost by Vault (restart); or, when its id never reached
  the process (a timed-out read), counted as a suspected orphan. A retired lease is revoked by
  the end of its drain window when Vault answered throughout it;
* only the process's own leases and tokens are revoked; a handed-in token never is;
* ``close()`` returns within its budget;
* renewals per lease TTL stay at or below 1.5, and Vault requests per simulated minute stay
  bounded (no storm).
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from vaultdb import _process, errors
from vaultdb._http import RawResponse
from vaultdb.auth import AppRoleAuth, AuthMethod, JWTAuth, TokenAuth
from vaultdb.credentials import Credentials
from vaultdb.events import LeaseRotated
from vaultdb.provider import CredentialProvider

from .clock import SimClock
from .simvault import (
    AuthMount,
    DynamicRole,
    FaultPlan,
    SimConfig,
    SimVault,
    StaticRole,
    TokenSpec,
    Window,
)

__all__ = ["InvariantViolation", "Lifetime", "LifetimeResult", "draw_lifetime", "run_lifetime"]

#: A JWT with a far ``exp``: the jwt login only needs its shape here (the simulated Vault
#: accepts any), and ``JWTAuth`` checks the expiry.
_FAKE_JWT = "eyJhbGciOiJub25lIn0.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6InNpbSJ9.sig"

SIM_ADDR = "http://vault.sim:8200"
#: Most Vault requests a provider may make in any simulated minute (the storm bound).
MAX_REQUESTS_PER_MINUTE = 200
#: ... and in any simulated second (a tight loop, even a short one).
MAX_REQUESTS_PER_SECOND = 30
#: Renewals per lease TTL allowed over a lifetime.
MAX_RENEWALS_PER_TTL = 1.5


class InvariantViolation(AssertionError):
    """An invariant failed; the message says which, with the seed and the trace to replay."""


@dataclass(frozen=True)
class Lifetime:
    """One drawn scenario (everything follows from the seed)."""

    seed: int
    auth: str  # jwt, approle or token
    static: bool
    lease_ttl: float
    lease_max_ttl: float
    token_ttl: float
    token_max_ttl: float
    token_period: float
    drain: float
    hours: float
    ending: str  # close, atexit, sigterm or fork
    revoke_timeout: float
    calls: tuple[tuple[float, str], ...]
    faults: bool
    rotate_after: float | None = None

    def describe(self) -> str:
        return (f"seed={self.seed} auth={self.auth} static={self.static} "
                f"lease ttl/max={self.lease_ttl:g}/{self.lease_max_ttl:g} token "
                f"ttl/max/period={self.token_ttl:g}/{self.token_max_ttl:g}/{self.token_period:g} "
                f"drain={self.drain:g} hours={self.hours:g} ending={self.ending} "
                f"calls={len(self.calls)} faults={self.faults} rotate_after={self.rotate_after}")


@dataclass
class LifetimeResult:
    """What one lifetime did (for the benchmark's figures and the tests' counts)."""

    lifetime: Lifetime
    virtual_seconds: float
    requests: int
    leases: int
    renewals: int
    rotations: int
    faults_seen: dict[str, int] = field(default_factory=dict)
    trace: list[str] = field(default_factory=list)


def draw_lifetime(seed: int, *, faults: bool = True) -> Lifetime:
    """The scenario of lifetime ``seed``.

    A life lasts 20 to 60 cycles of its shortest timer (lease TTL, token TTL, static
    rotation), at least a quarter of an hour and at most four hours: long enough for every
    transition to happen many times, short enough for thousands of lives a minute.
    """
    rng = random.Random(seed)
    lease_ttl = rng.choice([20.0, 60.0, 300.0, 900.0, 3600.0])
    max_ttl = lease_ttl * rng.choice([1, 2, 3, 6, 24])
    token_ttl = rng.choice([30.0, 120.0, 600.0, 3600.0, 0.0])
    token_max = rng.choice([0.0, 0.0, token_ttl * 3, 7200.0]) if token_ttl else 0.0
    period = rng.choice([0.0, 0.0, 0.0, 300.0])
    static = rng.random() < 0.1
    timers = [lease_ttl, token_ttl or math.inf, period or math.inf]
    shortest = min(timers) if not static else max(60.0, lease_ttl)
    hours = min(4.0, max(0.25, shortest * rng.uniform(20, 60) / 3600))
    end = hours * 3600
    n_calls = rng.randint(3, 30)
    kinds = ["credentials"] * 6 + ["refresh", "credentials_burst"]
    calls = tuple(sorted((rng.uniform(0, end), rng.choice(kinds)) for _ in range(n_calls)))
    return Lifetime(
        seed=seed, auth=rng.choice(["jwt", "jwt", "approle", "token"]),
        static=static, lease_ttl=lease_ttl, lease_max_ttl=max_ttl,
        token_ttl=token_ttl, token_max_ttl=token_max, token_period=period,
        drain=rng.choice([0.0, 5.0, 30.0]), hours=round(hours, 3),
        ending=rng.choice(["close", "close", "atexit", "sigterm", "fork"]),
        revoke_timeout=rng.choice([2.0, 10.0]), calls=calls, faults=faults,
        rotate_after=rng.choice([None, None, None, lease_ttl / 2, lease_ttl * 3]))


class _Run:
    """The state of one lifetime while it runs."""

    def __init__(self, life: Lifetime, *, trace: bool) -> None:
        self.life = life
        self.rng = random.Random(life.seed * 7919 + 1)
        self.clock = SimClock(random.Random(life.seed * 104729 + 3))
        token = TokenSpec(ttl=int(life.token_ttl), max_ttl=int(life.token_max_ttl),
                          period=int(life.token_period))
        plan = None
        if life.faults:
            drawn = FaultPlan.random(random.Random(life.seed * 31 + 7), life.hours * 3600)
            start = self.clock.now  # the plan counts from 0; the virtual clock does not
            plan = FaultPlan(tuple(Window(w.kind, w.start + start, w.end + start)
                                   for w in drawn.windows), drawn.rates, drawn.slow)
        config = SimConfig(
            addresses=(SIM_ADDR,),
            roles={"app": DynamicRole(int(life.lease_ttl), int(life.lease_max_ttl))},
            static_roles={"app": StaticRole("app-static",
                                            int(max(60.0, life.lease_ttl)))} if life.static
            else {},
            auth={"jwt": AuthMount("jwt", token), "approle": AuthMount("approle", token)},
            faults=plan, index_header=life.seed % 2 == 1)  # half the lives: a Raft cluster
        self.vault = SimVault(self.clock, random.Random(life.seed * 13 + 5), config)
        self.ledger = self.vault.ledger
        self.tracing = trace
        self.trace: list[str] = []
        self.in_flight_creds = 0
        self.handed_in: str | None = None
        self._by_user: dict[str, Any] = {}
        self.rotations: list[tuple[float, str]] = []  # (time, lease id rotated out)

    # -- questions about the simulated Vault's ledger ------------------------------------------

    def had_trouble_since(self, since: float) -> bool:
        """Whether any request since ``since`` met a fault or an error answer, or Vault
        restarted (then a failed call is not the engine's fault)."""
        if any(t >= since for t in self.ledger.restarts):
            return True
        for record in reversed(self.ledger.requests):
            if record.t < since:
                break
            if record.fault or not isinstance(record.outcome, int) or record.outcome >= 400:
                return True
        return False

    def credentials_work(self, creds: Credentials) -> bool:
        """Whether the database would accept ``creds`` now, per the simulated Vault."""
        now = self.clock.now
        self.vault.settle(now)
        if creds.static:
            read_at = creds.deadline - creds.lease_duration
            if any(t >= read_at for t in self.ledger.restarts):
                return True  # rotated out of schedule (as by an operator): the engine can't know
            return creds.password == self.vault.static_password("app", now)
        if len(self._by_user) != len(self.ledger.leases):
            self._by_user = {r.username: r for r in self.ledger.leases.values()}
        record = self._by_user.get(creds.username)
        if record is None:
            return False
        return record.alive(now) or (record.ended_at is not None and record.dropped_at is None)

    def process_accessors(self) -> set[str]:
        return {a for a, r in self.ledger.tokens.items() if r.owner == "process"}

    def log(self, text: str) -> None:
        if self.tracing:
            self.trace.append(f"{self.clock.now - 1000:10.2f} {text}")

    def fail(self, what: str) -> None:
        tail = "\n".join(self.trace[-60:]) if self.trace else "(rerun with trace=True)"
        plan = self.vault.plan.describe()
        raise InvariantViolation(
            f"{what}\n  {self.life.describe()}\n  faults: {plan}\n  replay: "
            f"python -m vaultdb.testing.sim --seed {self.life.seed} --trace\n{tail}")

    # -- the exchange the provider talks through ------------------------------------------

    def exchange(self, method: str, url: str, headers: Mapping[str, str], body: bytes | None,
                 *, deadline: float) -> RawResponse:
        creds = "/creds/" in url or "/static-creds/" in url
        if creds:
            self.in_flight_creds += 1
            if self.in_flight_creds > 1:
                self.fail("two credentials requests in flight at once")
        try:
            answer = self.vault.exchange(method, url, headers, body, deadline=deadline)
            self.log(f"{method} {url.split('/v1/', 1)[-1]} -> {answer.status}")
            return answer
        except Exception as exc:
            self.log(f"{method} {url.split('/v1/', 1)[-1]} -> {type(exc).__name__}")
            raise
        finally:
            if creds:
                self.in_flight_creds -= 1

    # -- building the provider ----------------------------------------------------------------

    def auth(self) -> AuthMethod:
        life = self.life
        if life.auth == "token":
            token, accessor = self.vault.issue_token(TokenSpec(
                ttl=int(life.token_ttl), max_ttl=int(life.token_max_ttl),
                period=int(life.token_period)))
            self.handed_in = accessor
            return TokenAuth(token=token)
        if life.auth == "approle":
            return AppRoleAuth(role_id="sim-role-id", secret_id="sim-secret-id")
        return JWTAuth(role="sim", jwt=_FAKE_JWT)

    def provider(self, auth: AuthMethod) -> CredentialProvider:
        return CredentialProvider(
            "app", auth=auth, vault_addr=SIM_ADDR, static=self.life.static,
            drain_seconds=self.life.drain, fetch_timeout=10.0, request_timeout=5.0,
            revoke_timeout=self.life.revoke_timeout, handle_sigterm=False,
            rotate_after=self.life.rotate_after,
            _clock=self.clock, _exchange=self.exchange, _rng=self.rng)


def run_lifetime(seed: int, *, faults: bool = True, trace: bool = False,
                 mutate: Callable[[CredentialProvider], None] | None = None) -> LifetimeResult:
    """Run one lifetime and check every invariant; raise :class:`InvariantViolation`."""
    life = draw_lifetime(seed, faults=faults)
    with _quiet(not trace), _own_process_registry():
        return _run_lifetime(life, trace=trace, mutate=mutate)


@contextlib.contextmanager
def _quiet(quiet: bool) -> Iterator[None]:
    """Lifetimes log thousands of lines; only a traced replay shows them."""
    root = logging.getLogger("vaultdb")
    level = root.level
    if quiet:
        root.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        root.setLevel(level)


@contextlib.contextmanager
def _own_process_registry() -> Iterator[None]:
    """Each lifetime is a process of its own: ``close_all`` sees only its providers."""
    saved = _process._providers
    _process._providers = weakref.WeakSet()
    try:
        yield
    finally:
        _process._providers = saved


def _run_lifetime(life: Lifetime, *, trace: bool,
                  mutate: Callable[[CredentialProvider], None] | None) -> LifetimeResult:
    run = _Run(life, trace=trace)
    clock = run.clock
    provider = run.provider(run.auth())
    provider.subscribe(lambda e: run.rotations.append((clock.now, str(e.previous.lease_id))),
                       LeaseRotated)
    if mutate is not None:
        mutate(provider)
    handed_out: list[tuple[float, Credentials]] = []

    def app_call(kind: str) -> Callable[[], None]:
        def call() -> None:
            try:
                if kind == "refresh":
                    current = provider._engine.current
                    creds = provider.refresh(current)
                else:
                    creds = provider.credentials()
                handed_out.append((clock.now, creds))
                run.log(f"app {kind} -> generation {creds.generation} user {creds.username}")
                _check_alive(run, creds, f"{kind}()")
            except errors.VaultDBError as exc:
                run.log(f"app {kind} -> {type(exc).__name__}")
                if not run.had_trouble_since(clock.now - 60):
                    run.fail(f"{kind}() failed with {type(exc).__name__} while Vault was "
                             f"healthy for a minute: {exc}")
        return call

    start = clock.now
    clock.spawn("app-start", app_call("credentials"), at=start)
    for offset, kind in life.calls:
        if kind == "credentials_burst":
            for i in range(3):
                clock.spawn(f"app-burst-{i}", app_call("credentials"), at=start + offset)
        else:
            clock.spawn(f"app-{kind}", app_call(kind), at=start + offset)
    end = start + life.hours * 3600
    step = 30.0
    t = start
    while t < end:
        t = min(end, t + step)
        clock.run(until=t)
        _check_snapshot(run, provider)
    return _end_of_life(run, provider, handed_out)


def _check_alive(run: _Run, creds: Credentials, what: str) -> None:
    now = run.clock.now
    if creds.deadline <= now:
        run.fail(f"{what} returned credentials past their deadline")
    if not run.credentials_work(creds):
        run.fail(f"{what} returned credentials Vault no longer honours (user {creds.username}, "
                 f"generation {creds.generation}, deadline in {creds.deadline - now:.1f}s)")


def _check_snapshot(run: _Run, provider: CredentialProvider) -> None:
    creds = provider._engine.current
    if creds is not None and creds.deadline > run.clock.now:
        _check_alive(run, creds, "the current snapshot")


def _end_of_life(run: _Run, provider: CredentialProvider,
                 handed_out: list[tuple[float, Credentials]]) -> LifetimeResult:
    life, clock = run.life, run.clock
    start_of_life = SimClock.START
    child_of_fork = life.ending == "fork"
    parent_leases: set[str] = set()
    orphans_of_parent = 0
    if child_of_fork:
        # The process forks and this is the child: everything inherited is the parent's, which
        # lives on. The child fetches its own credentials, then exits normally.
        parent_leases = {r.lease_id for r in run.ledger.live_leases(clock.now, "process")}
        orphans_of_parent = provider._engine.counters.orphans_suspected
        clock.fork()  # the child has none of the parent's threads
        _process._after_fork_in_child()  # what os.register_at_fork runs in the child
        clock.spawn("child", lambda: _ignore_errors(provider.credentials), at=clock.now)
        clock.run(until=clock.now + 30)
    budget = life.revoke_timeout
    closed_at: list[float] = []
    started = clock.now

    def close() -> None:
        if life.ending in ("atexit", "sigterm"):
            _process.close_all(timeout=budget)  # what the atexit and SIGTERM handlers call
        provider.close(timeout=budget)
        closed_at.append(clock.now)

    clock.spawn("closer", close, at=clock.now)
    clock.run(until=clock.now + budget + 60)
    if not closed_at:
        run.fail("close() never returned")
    if closed_at[0] - started > budget + 0.5:
        run.fail(f"close() took {closed_at[0] - started:.1f}s of virtual time; budget {budget}s")
    clock.run(until=clock.now + 1)  # let the renewer notice and stop
    _check_ledger(run, parent_leases, closing_since=started,
                  counted_orphans=orphans_of_parent
                  + provider._engine.counters.orphans_suspected)
    _check_rates(run)
    status = provider.status()
    faults: dict[str, int] = {}
    for record in run.ledger.requests:
        if record.fault:
            faults[record.fault] = faults.get(record.fault, 0) + 1
    return LifetimeResult(life, clock.now - start_of_life, len(run.ledger.requests),
                          len(run.ledger.leases_of("process")), status.renewals,
                          status.rotations, faults, run.trace)


def _ignore_errors(call: Callable[[], Any]) -> None:
    with contextlib.suppress(errors.VaultDBError):
        call()


def _check_ledger(run: _Run, parent_leases: set[str], *, closing_since: float,
                  counted_orphans: int) -> None:
    run.vault.settle()  # expiries (a token's death takes its leases) are applied lazily
    ledger = run.ledger
    mine = run.process_accessors()
    close_had_trouble = run.had_trouble_since(closing_since)
    # Leases whose creating request got no usable answer: the process never learnt their id.
    # With a token it owns they die when it revokes the token; with a handed-in token they
    # can only expire, and the engine must have counted them.
    unanswered = {r.t for r in ledger.requests if r.applied and "/creds/" in r.path
                  and (not isinstance(r.outcome, int) or r.fault == "truncated_json")}
    orphans = [lease for lease in ledger.leases_of("process") if lease.created in unanswered]
    if len(orphans) > counted_orphans:
        run.fail(f"{len(orphans)} leases were created by unanswered requests but the engine "
                 f"counted {counted_orphans}")
    for lease in ledger.leases.values():
        if lease.why == "revoked" and lease.revoked_by in mine and (
                lease.owner != "process" or lease.lease_id in parent_leases):
            run.fail(f"the process revoked lease {lease.lease_id}, which is not its own")
        if lease.owner != "process" or lease.lease_id in parent_leases:
            continue
        if lease in orphans and run.handed_in is not None:
            continue
        if lease.alive(run.clock.now) and not close_had_trouble:
            run.fail(f"lease {lease.lease_id} (user {lease.username}) is still alive after "
                     "close, and Vault answered throughout the close")
    for token in ledger.tokens.values():
        if token.why == "revoked" and token.accessor == run.handed_in:
            run.fail("the handed-in token was revoked")
        if token.why == "revoked" and token.owner != "process":
            run.fail(f"token {token.accessor} of another process was revoked")
    if not run.life.faults:
        drain = run.life.drain
        for at, lease_id in run.rotations:
            rotated = ledger.leases.get(lease_id)
            if rotated is None or rotated.lease_id in parent_leases:
                continue
            ended = rotated.ended_at if rotated.ended_at is not None else math.inf
            if ended > at + drain + 2.0 and ended > min(rotated.expires, rotated.max_end):
                run.fail(f"lease {lease_id}, rotated out at {at - SimClock.START:.1f}s, ended "
                         f"{ended - at:.1f}s later (drain {drain}s)")


def _check_rates(run: _Run) -> None:
    busiest = run.ledger.max_requests_per(60.0)
    if busiest > MAX_REQUESTS_PER_MINUTE:
        run.fail(f"{busiest} Vault requests within one simulated minute (a storm)")
    burst = run.ledger.max_requests_per(1.0)
    if burst > MAX_REQUESTS_PER_SECOND:
        run.fail(f"{burst} Vault requests within one simulated second (a loop)")
    # Renewals the process saw succeed, per lease TTL held, over the lifetime.
    ttl = run.life.lease_ttl
    ttls = 0.0
    for lease in run.ledger.leases_of("process"):
        end = lease.ended_at if lease.ended_at is not None else run.clock.now
        ttls += max(end - lease.created, 0.0) / ttl
    renewals = sum(1 for r in run.ledger.requests
                   if r.path == "sys/leases/renew" and r.outcome == 200)
    if renewals > MAX_RENEWALS_PER_TTL * max(ttls, 1.0) + 1:
        run.fail(f"{renewals} lease renewals in {ttls:.1f} lease TTLs")
