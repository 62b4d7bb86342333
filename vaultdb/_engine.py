"""The lease engine: carries out what the planner decides, one action at a time.

State is split by owner: the login session (:mod:`vaultdb._session`: token, renewal,
re-login, retired tokens), the lease book (:mod:`vaultdb._leases`: current and draining
credentials) and the planner (:mod:`vaultdb._planner`: a pure ``plan(now)``). The engine holds
the lock that serialises every Vault call, so there is never more than one credentials request
in flight per provider; readers never take it: :attr:`LeaseEngine.current` is an immutable
snapshot swapped by assignment.

Time, locks and the Vault transport are injected (:mod:`vaultdb._clock`,
:class:`vaultdb._http.Exchange`), which is how the lifetime simulation drives this very code
through hours of virtual time. Every public method takes a deadline on that clock.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar

from . import errors
from . import events as ev
from ._clock import Clock
from ._failures import FailureState
from ._leases import HeldLease, LeaseBook
from ._planner import TOKEN_END, Action, EngineView, Plan, plan
from ._retry import RetryPolicy
from ._revocation import Counters, Revocations
from ._schedule import SchedulePolicy, renew_increment, retire_time
from ._secret import Secret
from ._session import LoginSession, SessionUser
from .credentials import Credentials

logger = logging.getLogger("vaultdb.lease")

_T = TypeVar("_T")
#: Actions run by one :meth:`LeaseEngine.step` at most (a bug can never spin the renewer).
MAX_ACTIONS_PER_STEP = 8


class LeaseEngine(Revocations):
    """Obtains, renews, rotates and revokes one role's credentials (see the module doc)."""

    def __init__(self, *, role: str, mount: str, static: bool, session: LoginSession,
                 policy: SchedulePolicy, retry: RetryPolicy, clock: Clock,
                 emit: Callable[[ev.LeaseEvent], None], rng: random.Random,
                 request_timeout: float, rotate_after: float | None = None) -> None:
        self.role, self.mount, self.static = role, mount, static
        self.session, self.policy, self.retry, self.clock = session, policy, retry, clock
        self._emit, self.rng, self.request_timeout = emit, rng, request_timeout
        self.rotate_after = rotate_after
        self.generation_seen = 0
        self._init_state()
        self.user = SessionUser(role, emit, lambda: self.book.accessors_in_use())
        session.attach(self.user)

    def _init_state(self) -> None:
        self.lock = self.clock.lock()
        self.book = LeaseBook()
        self.counters = Counters()
        self.current: Credentials | None = None
        self.trouble = FailureState(role=self.role, retry=self.retry, clock=self.clock,
                                    rng=self.rng, emit=self._emit)
        self._force_rotate: str | None = None
        self._token_end_accepted: str | None = None
        self._expired_reported = False
        #: Set by :meth:`shutdown`: nothing may be fetched afterwards, it would never be revoked.
        self.closed = False

    def reset_after_fork(self) -> None:
        """Forget everything inherited from the parent; the child gets its own on first use."""
        self._init_state()
        self.session.reset_after_fork()

    # -- caller's thread --------------------------------------------------------------------

    def obtain(self, deadline: float) -> Credentials:
        """Valid credentials, fetching (and logging in) if there are none, by ``deadline``."""
        attempt, last = 0, None
        while True:
            self._acquire(deadline, last)
            try:
                if self.closed:
                    raise errors.ProviderClosedError(
                        f"The provider for role {self.role!r} is closed.",
                        hint="create a new CredentialProvider")
                current = self.current
                if current is not None and current.is_valid(self.clock.monotonic()):
                    return current
                try:
                    fresh = self._replace("expired" if current else None, deadline).credentials
                    if fresh.is_valid(self.clock.monotonic()):
                        return fresh
                    raise errors.VaultUnavailableError(  # a static password about to rotate
                        f"Vault handed out credentials for role {self.role!r} that end at "
                        "once.", hint="nothing: vaultdb asks again shortly")
                except errors.VaultDBError as exc:
                    self.trouble.record(exc, "fetch credentials", will_retry=exc.retryable)
                    if not exc.retryable:
                        raise
                    # A last attempt cut short by our own deadline says less than the one
                    # before it ("sealed", "refused"): report the more telling one.
                    if last is None or self.clock.monotonic() < deadline:
                        last = exc
            finally:
                self.lock.release()
            attempt += 1
            delay = self.retry.delay(attempt, unit=self.rng.uniform(-1, 1), urgent=True)
            if self.clock.monotonic() + delay >= deadline:
                if self.current is not None:
                    raise errors.CredentialsExpiredError(
                        f"Credentials for role {self.role!r} expired and no fresh ones could be "
                        "fetched in time.", hint=last.hint) from last
                raise last
            self.clock.sleep(delay)

    def refresh(self, failed: Credentials | None, deadline: float) -> Credentials:
        """New credentials because ``failed`` stopped working; shared by concurrent callers."""
        self._acquire(deadline, None)
        try:
            current = self.current
            if failed is not None and current is not None and (
                    current.generation != failed.generation or current.password != failed.password):
                return current
            if current is not None:
                self.current = current.with_deadline(0.0, now=self.clock.monotonic(),
                                                     wall=self.clock.time())
        finally:
            self.lock.release()
        return self.obtain(deadline)

    def _acquire(self, deadline: float, last: errors.VaultDBError | None) -> None:
        if not self.lock.acquire(timeout=max(0.0, deadline - self.clock.monotonic())):
            raise errors.VaultUnavailableError(
                f"Timed out waiting for credentials for {self.role!r} (another Vault call for "
                "this provider is still running).",
                hint="Vault's reachability and VAULTDB_REQUEST_TIMEOUT") from last

    # -- background maintenance (renewer thread) --------------------------------------------

    def step(self) -> float:
        """Do whatever is due; return seconds until something is due again."""
        self.lock.acquire()
        try:
            for _ in range(MAX_ACTIONS_PER_STEP):
                if self.closed:
                    return float("inf")
                now = self.clock.monotonic()
                next_plan = plan(now, self.view(), self.policy)
                if next_plan.at > now:
                    return next_plan.at - now
                self._run(next_plan, now)
            return 0.0
        finally:
            self.lock.release()

    def view(self) -> EngineView:
        """The state the planner decides from (a copy; for the planner and the simulation)."""
        held, session = self.book.current, self.session
        current = self.current
        return EngineView(
            static=self.static,
            lease=None if held is None else (held.granted_at, held.granted_ttl,
                                             held.original_ttl, held.credentials.renewable,
                                             held.cap_end, held.unit),
            token_renewal_at=session.renewal_due() if held else None,
            token_hard_end=(None if session.token is not None and session.token.accessor
                            == self._token_end_accepted else session.hard_end()),
            next_revocation=self.book.next_revocation(),
            force_rotate=self._force_rotate, retry_at=self.trouble.retry_at,
            unreported_deadline=(current.deadline if current is not None
                                 and not self._expired_reported else None),
            max_age_at=(held.issued_at + self.rotate_after if held is not None
                        and self.rotate_after and not self.static else None))

    def _run(self, next_plan: Plan, now: float) -> None:
        action = next_plan.action
        if action is Action.REVOKE_RETIRED:
            self._revoke_drained(now)
            return
        if action is Action.REPORT_EXPIRY:
            self._expired_reported = True
            self.trouble.report_expiry(self.current)
            return
        deadline = now + 2 * self.request_timeout
        try:
            if action is Action.RENEW_TOKEN:
                if not self.session.renew(deadline):
                    self._force_rotate = "login token lost"
                self._refresh_deadline()
            elif action is Action.RENEW_LEASE:
                self._renew(deadline)
            else:
                self._force_rotate = None
                self._replace(next_plan.reason, deadline)
            self.trouble.succeeded()
        except errors.VaultDBError as exc:
            self.trouble.failed(exc, self.current)

    def _renew(self, deadline: float) -> None:
        held = self.book.current
        assert held is not None and held.lease_id is not None
        asked = renew_increment(held.original_ttl, self.policy)
        now = self.clock.monotonic()
        try:
            renewal = self.session.with_relogin(lambda token: self.session.vault.renew_lease(
                str(held.lease_id), asked, token, deadline=deadline, role=self.role,
                generation=held.credentials.generation), deadline)
        except errors.LeaseNotFoundError:
            logger.warning("Vault no longer knows lease %s (restart, revocation or max_ttl): "
                           "fetching fresh credentials", held.lease_id)
            self._force_rotate = "lease lost"
            return
        self.counters.renewals += 1
        held.granted_at, held.granted_ttl = now, renewal.ttl
        if renewal.ttl < asked:  # Vault grants whole seconds: any shortfall is the cap
            held.cap_end = now + renewal.ttl
        held.unit = self.rng.uniform(-1, 1)
        self._refresh_deadline()
        logger.info("renewed lease %s for %.0fs%s", held.lease_id, renewal.ttl,
                    " (capped by max_ttl: rotation scheduled)" if held.cap_end else "")
        self._emit(ev.LeaseRenewed(self.role, held.credentials))

    # -- the single place where new credentials come in -------------------------------------

    def _replace(self, reason: str | None, deadline: float) -> HeldLease:
        """Fetch new credentials and make them current; retire the old ones."""
        old = self.book.current
        token = self.session.ensure(lease_ttl=old.original_ttl if old else 0.0,
                                    deadline=deadline, long_lived=not self.static,
                                    policy=self.policy)
        if reason == TOKEN_END and old is not None and token.accessor == old.token_accessor:
            # No new token could be had (a handed-in token near its max TTL): a fresh lease
            # would die with the same token, so keep the current one until then.
            self._token_end_accepted = token.accessor
            logger.warning("the login token (accessor %s) ends in %.0fs and no new one could "
                           "be had: credentials of role %r end with it", token.accessor,
                           (token.max_deadline or 0) - self.clock.monotonic(), self.role)
            return old
        if self.closed:  # close() began during the login: create nothing it would have to revoke
            raise errors.ProviderClosedError(f"The provider for role {self.role!r} is closed.",
                                             hint="create a new CredentialProvider")
        new = self.session.with_relogin(lambda token: self._fetch(token, deadline), deadline)
        if old is not None and self.static and new.credentials.password == old.credentials.password:
            new.credentials = replace(new.credentials, generation=old.credentials.generation)
            self.book.adopt(new)  # same static password: a renewal in all but name
            self.current = new.credentials
            self._emit(ev.LeaseRenewed(self.role, new.credentials))
            return new
        self.generation_seen += 1
        new.credentials = replace(new.credentials, generation=self.generation_seen)
        self.book.adopt(new)
        self.current = creds = new.credentials
        self._expired_reported = False
        if old is None:
            logger.info("new database credentials for role %r: user %r, generation %d, "
                        "lease %s for %.0fs", self.role, creds.username, creds.generation,
                        creds.lease_id, creds.lease_duration)
            self._emit(ev.LeaseCreated(self.role, creds))
        else:
            self.counters.rotations += 1
            now = self.clock.monotonic()
            self.book.retire(old, retire_time(now=now, old_deadline=old.credentials.deadline,
                                              policy=self.policy))
            logger.info("rotated credentials for role %r (%s): user %r -> %r, generation %d",
                        self.role, reason, old.credentials.username, creds.username,
                        creds.generation)
            self._emit(ev.LeaseRotated(self.role, creds, old.credentials, reason or "rotation"))
            self.session.release_unused(deadline)
        return new

    def _fetch(self, token: Secret | None, deadline: float) -> HeldLease:
        vault, now = self.session.vault, self.clock.monotonic()
        accessor = self.session.token.accessor if self.session.token else None
        if self.static:
            s = vault.read_static(self.mount, self.role, token, deadline=deadline)
            self.counters.fetches += 1
            return self._held(s.username, s.password, None, s.ttl, False, None, now)
        try:
            d = vault.read_dynamic(self.mount, self.role, token, deadline=deadline)
        except errors.VaultUnavailableError as exc:
            if exc.request_sent and exc.status is None:  # sent, and no answer came back
                self.counters.orphans_suspected += 1
                logger.warning("a credentials request for role %r got no answer; not retried "
                               "blindly: a lease it created dies with the login token (or at "
                               "its TTL if the token was handed in)", self.role)
            raise
        self.counters.fetches += 1
        return self._held(d.username, d.password, d.lease_id, d.lease_duration, d.renewable,
                          accessor, now)

    def _held(self, username: str, password: str, lease_id: str | None, ttl: float,
              renewable: bool, accessor: str | None, now: float) -> HeldLease:
        held = HeldLease.issued(username, password, lease_id, ttl, renewable, accessor, now,
                                static=self.static, unit=self.rng.uniform(-1, 1))
        held.credentials = self._with_deadline(held)
        return held

    def _with_deadline(self, held: HeldLease) -> Credentials:
        """A static password ends when Vault rotates it (at its ttl); a lease may end earlier,
        with the login token that created it."""
        token_end = None if self.static else self.session.expires(held.token_accessor)
        return held.with_deadline(token_end, now=self.clock.monotonic(), wall=self.clock.time())

    def _refresh_deadline(self) -> None:
        held = self.book.current
        if held is None:
            return
        held.credentials = self._with_deadline(held)
        if self.current is not None and self.current.generation == held.credentials.generation \
                and self.current.deadline > 0:
            self.current = held.credentials
