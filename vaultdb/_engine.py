"""The lease engine: what the provider holds, and every transition of it.

One lock (``self.lock``) serialises all Vault calls and state changes, so there is never more
than one credentials request in flight per provider. Readers never take it: the current
:class:`~vaultdb.credentials.Credentials` is an immutable snapshot swapped by assignment.

Timing decisions come from :mod:`vaultdb._schedule` (pure functions); Vault calls go through
:mod:`vaultdb._vault`; the background thread (:mod:`vaultdb._renewer`) calls :meth:`step`.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TypeVar

from . import errors
from . import events as ev
from ._schedule import (
    Backoff,
    LeaseAction,
    LeasePlan,
    SchedulePolicy,
    plan_lease,
    plan_static_refresh,
    plan_token_renewal,
    renew_increment,
    retire_time,
    token_needs_relogin,
)
from ._vault import VaultClient, VaultSettings
from .auth import AuthMethod
from .credentials import Credentials, LoginToken, wall_clock

logger = logging.getLogger("vaultdb.lease")

_T = TypeVar("_T")

STATIC_GRACE = 0.5
MAX_REVOKE_ATTEMPTS = 3


@dataclass(eq=False)  # each held lease is its own thing: compared by identity
class _Held:
    """Bookkeeping for one set of credentials this process holds."""

    credentials: Credentials
    token: LoginToken | None
    granted_at: float
    granted_ttl: float
    original_ttl: float
    unit: float = field(default_factory=lambda: random.uniform(-1, 1))
    cap_end: float | None = None
    revoke_at: float | None = None
    revoke_attempts: int = 0


@dataclass(eq=False)
class Counters:
    """What this provider asked of Vault so far (for status() and the metrics)."""

    logins: int = 0
    fetches: int = 0
    renewals: int = 0
    rotations: int = 0
    revocations: int = 0
    errors: int = 0


class LeaseEngine:
    def __init__(self, *, role: str, mount: str, static: bool, auth: AuthMethod,
                 settings: VaultSettings, policy: SchedulePolicy,
                 emit: Callable[[ev.LeaseEvent], None]) -> None:
        self.role = role
        self.mount = mount
        self.static = static
        self.auth = auth
        self.settings = settings
        self.policy = policy
        self.backoff = Backoff()
        self._emit = emit
        self.counters = Counters()
        self._init_state()

    def _init_state(self) -> None:
        self.lock = threading.RLock()
        self.vault = VaultClient(self.settings)
        self.current: Credentials | None = None
        self.token: LoginToken | None = None
        self._held: _Held | None = None
        self._retiring: list[_Held] = []
        self._old_tokens: list[LoginToken] = []
        self._token_unit = random.uniform(-1, 1)
        self._generation_seen = 0
        self._failures = 0
        self._retry_at: float | None = None
        self._force_rotate: str | None = None
        self._expired_reported = False
        self._orphan_suspected = False
        self._token_warned = False
        self.last_error: errors.VaultDBError | None = None
        self.last_error_at: float | None = None
        #: Set by :meth:`shutdown`: nothing may be fetched afterwards, it would never be revoked.
        self.closed = False

    def reset_after_fork(self) -> None:
        """Forget everything inherited from the parent; the child gets its own on first use."""
        generation = self._generation_seen
        self._init_state()
        self._generation_seen = generation
        self.counters = Counters()

    # -- obtaining credentials (caller's thread) --------------------------------------------

    def obtain(self, timeout: float) -> Credentials:
        """Return valid credentials, fetching (and logging in) if there are none."""
        deadline = time.monotonic() + timeout
        attempt = 0
        last: errors.VaultDBError | None = None
        while True:
            if not self.lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
                raise errors.VaultUnavailableError(
                    f"Timed out after {timeout:.1f}s waiting for credentials for {self.role!r}.",
                    hint="Vault's reachability; the renewer may be stuck on a slow Vault call")
            try:
                if self.closed:
                    raise errors.ProviderClosedError(
                        f"The provider for role {self.role!r} is closed.",
                        hint="create a new CredentialProvider")
                current = self.current
                if current is not None and current.is_valid():
                    return current
                try:
                    return self._replace("expired" if current else None).credentials
                except errors.VaultDBError as exc:
                    self._record_error(exc, "fetch credentials", will_retry=exc.retryable)
                    if not exc.retryable:
                        raise
                    last = exc
            finally:
                self.lock.release()
            attempt += 1
            now = time.monotonic()
            delay = self.backoff.delay(attempt, unit=random.uniform(-1, 1))
            if now + delay >= deadline:
                if self.current is not None:
                    raise errors.CredentialsExpiredError(
                        f"Credentials for role {self.role!r} expired and no fresh ones could be "
                        f"fetched within {timeout:.1f}s.", hint=last.hint if last else None,
                    ) from last
                assert last is not None
                raise last
            time.sleep(delay)

    # -- background maintenance (renewer thread) --------------------------------------------

    def step(self) -> float:
        """Do whatever is due; return seconds until something is due again."""
        with self.lock:
            now = time.monotonic()
            self._revoke_drained(now)
            backing_off = self._retry_at is not None and now < self._retry_at
            if not backing_off and self._held is not None:
                try:
                    self._maintain_token(now)
                    self._maintain_lease(time.monotonic())
                    self._failures = 0
                    self._retry_at = None
                except errors.VaultDBError as exc:
                    self._failed(exc)
            self._report_expiry(time.monotonic())
            return self._next_due(time.monotonic())

    def _maintain_token(self, now: float) -> None:
        token = self.token
        if token is None:
            return
        due = plan_token_renewal(granted_at=token.issued_at, ttl=token.ttl,
                                 renewable=token.renewable, capped=token.max_deadline is not None,
                                 policy=self.policy, unit=self._token_unit)
        if due is None or now < due:
            return
        asked = renew_increment(token.ttl, self.policy)
        try:
            renewal = self.vault.renew_self(asked)
        except (errors.PermissionDeniedError, errors.AuthenticationError):
            self._token_lost(token)
            return
        now = time.monotonic()
        capped = renewal.ttl < asked
        self.token = replace(token, ttl=renewal.ttl, issued_at=now,
                             expires=now + renewal.ttl if renewal.ttl > 0 else None,
                             max_deadline=now + renewal.ttl if capped else None)
        self._token_unit = random.uniform(-1, 1)
        logger.info("renewed Vault login token (accessor %s) for %.0fs%s", token.accessor,
                    renewal.ttl, " (capped by the token's max TTL)" if capped else "")
        self._emit(ev.LoginRenewed(self.role, token.accessor, renewal.ttl))
        self._refresh_deadline()

    def _token_lost(self, token: LoginToken) -> None:
        logger.warning("Vault login token (accessor %s) was rejected: logging in again; leases "
                       "created with it are gone, so credentials will rotate", token.accessor)
        self._emit(ev.LoginExpired(self.role, token.accessor))
        self.token = None
        self._login()
        self._force_rotate = "login token lost"

    def _maintain_lease(self, now: float) -> None:
        held = self._held
        assert held is not None
        if self._force_rotate:
            self._rotate_now(self._force_rotate)
            return
        if self.static:
            if now >= plan_static_refresh(read_at=held.granted_at, ttl=held.granted_ttl,
                                          grace=STATIC_GRACE):
                self._rotate_now("static password re-read")
            return
        plan = self._plan(held)
        if now < plan.at:
            return
        if plan.action is LeaseAction.ROTATE:
            self._rotate_now("max_ttl or login token end ahead")
            return
        self._renew(held)

    def _renew(self, held: _Held) -> None:
        creds = held.credentials
        assert creds.lease_id is not None
        asked = renew_increment(held.original_ttl, self.policy)
        try:
            renewal = self._with_relogin(lambda: self.vault.renew_lease(str(creds.lease_id), asked))
        except errors.LeaseNotFoundError:
            logger.warning("Vault no longer knows lease %s (restart, revocation or max_ttl): "
                           "fetching fresh credentials", creds.lease_id)
            self._rotate_now("lease lost")
            return
        now = time.monotonic()
        self.counters.renewals += 1
        held.granted_at, held.granted_ttl = now, renewal.ttl
        if renewal.ttl < asked:  # Vault grants whole seconds: any shortfall is the cap
            held.cap_end = now + renewal.ttl
        held.unit = random.uniform(-1, 1)
        held.credentials = creds.with_deadline(self._deadline(now + renewal.ttl), renewal.ttl)
        if held is self._held:
            self.current = held.credentials
        logger.info("renewed lease %s for %.0fs%s", creds.lease_id, renewal.ttl,
                    " (capped by max_ttl: rotation scheduled)" if held.cap_end else "")
        self._emit(ev.LeaseRenewed(self.role, held.credentials))

    def _rotate_now(self, reason: str) -> None:
        self._force_rotate = None
        self._replace(reason)

    # -- the single place where new credentials come in -------------------------------------

    def _replace(self, reason: str | None) -> _Held:
        """Fetch new credentials and make them current; retire the old ones."""
        now = time.monotonic()
        ttl_hint = self._held.original_ttl if self._held else 0.0
        if self.token is None or (not self.static and token_needs_relogin(
                now=now, token_hard_end=self.token.max_deadline, token_expires=self.token.expires,
                lease_ttl=ttl_hint, policy=self.policy)):
            self._login()
        new = self._with_relogin(self._fetch)
        old = self._held
        if old is not None and self.static and new.credentials.password == old.credentials.password:
            # Same static password: a renewal in all but name.
            self._held = new
            new.credentials = replace(new.credentials, generation=old.credentials.generation)
            self.current = new.credentials
            self._emit(ev.LeaseRenewed(self.role, new.credentials))
            return new
        self._generation_seen += 1
        new.credentials = replace(new.credentials, generation=self._generation_seen)
        self._held = new
        self.current = new.credentials
        self._expired_reported = False
        creds = new.credentials
        if old is None:
            logger.info("new database credentials for role %r: user %r, generation %d, "
                        "lease %s for %.0fs", self.role, creds.username, creds.generation,
                        creds.lease_id, creds.lease_duration)
            self._emit(ev.LeaseCreated(self.role, creds))
        else:
            self.counters.rotations += 1
            self._retire(old, time.monotonic())
            logger.info("rotated credentials for role %r (%s): user %r -> %r, generation %d",
                        self.role, reason, old.credentials.username, creds.username,
                        creds.generation)
            self._emit(ev.LeaseRotated(self.role, creds, old.credentials, reason or "rotation"))
        return new

    def _fetch(self) -> _Held:
        now = time.monotonic()
        if self.static:
            s = self.vault.read_static(self.mount, self.role)
            self.counters.fetches += 1
            deadline = now + s.ttl + STATIC_GRACE
            creds = Credentials(username=s.username, password=s.password, lease_id=None,
                                lease_duration=s.ttl, expires_at=wall_clock(deadline),
                                generation=0, renewable=False, static=True, deadline=deadline)
            return _Held(creds, None, now, s.ttl, s.ttl)
        try:
            d = self.vault.read_dynamic(self.mount, self.role)
        except errors.VaultUnavailableError as exc:
            if exc.request_sent:
                self._orphan_suspected = True
                logger.warning(
                    "a credentials request for role %r may have reached Vault without an "
                    "answer; not retried blindly. Any lease it created belongs to the login "
                    "token and is revoked with it at close (or expires at its TTL)", self.role)
            raise
        self.counters.fetches += 1
        self._warn_if_token_outlived(d.lease_duration, now)
        deadline = self._deadline(now + d.lease_duration)
        creds = Credentials(username=d.username, password=d.password, lease_id=d.lease_id,
                            lease_duration=d.lease_duration,
                            expires_at=wall_clock(deadline), generation=0,
                            renewable=d.renewable, static=False, deadline=deadline)
        return _Held(creds, self.token, now, d.lease_duration, d.lease_duration)

    def _warn_if_token_outlived(self, lease_ttl: float, now: float) -> None:
        token = self.token
        if self._token_warned or token is None or token.max_deadline is None:
            return
        if lease_ttl > token.max_deadline - now + 1:
            self._token_warned = True
            logger.warning(
                "the lease of role %r (%.0fs) outlives the login token, which cannot be renewed "
                "past %.0fs from now: credentials will rotate with every re-login. Give the "
                "auth role a token_max_ttl longer than the database role's TTL", self.role,
                lease_ttl, token.max_deadline - now)

    def _login(self) -> None:
        result = self.vault.login(self.auth)
        now = time.monotonic()
        old = self.token
        expires = now + result.ttl if result.ttl > 0 else None
        self.token = LoginToken(token=result.token, accessor=result.accessor, ttl=result.ttl,
                                renewable=result.renewable, issued_at=now, expires=expires,
                                owned=result.owned,
                                max_deadline=None if result.renewable else expires)
        self._token_unit = random.uniform(-1, 1)
        self.counters.logins += 1
        logger.info("logged in to Vault with %s (token accessor %s, ttl %.0fs, renewable %s)",
                    self.auth.describe(), result.accessor, result.ttl, result.renewable)
        self._emit(ev.LoginCreated(self.role, self.auth.method, result.accessor))
        if old is not None and old.owned and old.token != result.token:
            self._old_tokens.append(old)
            self._release_unused_tokens()

    def _with_relogin(self, call: Callable[[], _T]) -> _T:
        """Run a Vault call; on 403 log in again once if the token is dead, then report."""
        try:
            return call()
        except errors.PermissionDeniedError:
            if self.token is not None and self._token_alive():
                raise  # the token works: the policy, not the token, is the problem
            logger.warning("Vault denied a request for role %r: logging in again once in case "
                           "the token is no longer valid", self.role)
            self.token = None
            self._login()
            return call()

    def _token_alive(self) -> bool:
        """Ask Vault whether the current token still works (the default policy allows it)."""
        try:
            self.vault.lookup_self()
        except (errors.PermissionDeniedError, errors.AuthenticationError):
            return False
        except errors.VaultDBError:
            return True  # cannot tell; report the 403 as it is and let the retry decide
        return True

    # -- retiring and revoking --------------------------------------------------------------

    def _retire(self, held: _Held, now: float) -> None:
        if held.credentials.lease_id is None:
            self._release_unused_tokens()
            return
        held.revoke_at = retire_time(now=now, old_deadline=held.credentials.deadline,
                                     policy=self.policy)
        self._retiring.append(held)

    def _revoke_drained(self, now: float) -> None:
        for held in [h for h in self._retiring if h.revoke_at is not None and h.revoke_at <= now]:
            try:
                self._revoke(held)
            except errors.VaultDBError as exc:
                held.revoke_attempts += 1
                if held.revoke_attempts < MAX_REVOKE_ATTEMPTS and exc.retryable:
                    held.revoke_at = now + self.backoff.delay(held.revoke_attempts)
                    continue
                logger.warning("could not revoke lease %s (%s); it expires at its TTL",
                               held.credentials.lease_id, exc)
            self._retiring.remove(held)
        self._release_unused_tokens()

    def _revoke(self, held: _Held, budget: float | None = None) -> None:
        creds = held.credentials
        if creds.lease_id is None:
            return
        token = held.token
        if token is not None and token.expires is not None and token.expires <= time.monotonic():
            # Vault revoked the lease together with the token that created it; asking again
            # would only earn a 403 (the current token may be that same dead one).
            logger.debug("lease %s ended with its login token; nothing to revoke",
                         creds.lease_id)
            return
        try:
            self.vault.revoke_lease(creds.lease_id, budget=budget)
        except errors.LeaseNotFoundError:
            logger.debug("lease %s was already gone", creds.lease_id)
            return
        self.counters.revocations += 1
        logger.info("revoked lease %s (user %r, generation %d)", creds.lease_id, creds.username,
                    creds.generation)
        self._emit(ev.LeaseRevoked(self.role, creds))

    def _release_unused_tokens(self, budget: float | None = None) -> None:
        """Revoke old login tokens once no held lease was created with them."""
        in_use = {h.token.accessor for h in [self._held, *self._retiring] if h and h.token}
        for token in list(self._old_tokens):
            if token.accessor in in_use:
                continue
            self._old_tokens.remove(token)
            self._revoke_token(token, budget)

    def _revoke_token(self, token: LoginToken, budget: float | None = None) -> None:
        if not token.owned or (token.expires is not None and token.expires < time.monotonic()):
            return
        try:
            self.vault.revoke_token(token.token)
            logger.info("revoked Vault login token (accessor %s)", token.accessor)
        except errors.VaultDBError as exc:
            logger.warning("could not revoke Vault login token (accessor %s): %s",
                           token.accessor, exc)

    def shutdown(self, budget: float) -> None:
        """Revoke every lease and owned token this process holds, within ``budget`` seconds."""
        end = time.monotonic() + budget
        self.closed = True  # before waiting: a fetch in flight is the last one
        if not self.lock.acquire(timeout=budget):
            logger.warning("vaultdb: could not revoke within %.1fs (a Vault call is in flight); "
                           "leases will expire at their TTL", budget)
            return
        try:
            held_all = [h for h in [self._held, *self._retiring] if h is not None]
            for held in held_all:
                left = end - time.monotonic()
                if left <= 0:
                    logger.warning("vaultdb: revocation budget used up; lease %s expires at its "
                                   "TTL", held.credentials.lease_id)
                    continue
                try:
                    self._revoke(held, budget=left)
                except errors.VaultDBError as exc:
                    logger.warning("could not revoke lease %s at exit: %s",
                                   held.credentials.lease_id, exc)
            tokens = [*self._old_tokens, *([self.token] if self.token else [])]
            for token in tokens:
                if end - time.monotonic() > 0:
                    self._revoke_token(token)
            if self._orphan_suspected and not (self.token and self.token.owned):
                logger.warning("a credentials request without an answer may have left a lease "
                               "in Vault; it expires at the role's TTL")
            self._held, self._retiring, self._old_tokens = None, [], []
            self.current, self.token = None, None
        finally:
            self.lock.release()

    # -- helpers ----------------------------------------------------------------------------

    def _plan(self, held: _Held) -> LeasePlan:
        token_end = self.token.max_deadline if self.token else None
        ends = [t for t in (held.cap_end, token_end) if t is not None]
        return plan_lease(granted_at=held.granted_at, granted_ttl=held.granted_ttl,
                          original_ttl=held.original_ttl, renewable=held.credentials.renewable,
                          hard_end=min(ends) if ends else None, policy=self.policy,
                          unit=held.unit)

    def _deadline(self, lease_expires: float) -> float:
        """Credentials die with the lease or with the login token, whichever is first."""
        token_expires = self.token.expires if self.token else None
        return min(lease_expires, token_expires if token_expires is not None else math.inf)

    def _refresh_deadline(self) -> None:
        held = self._held
        if held is None or self.static:
            return
        deadline = self._deadline(held.granted_at + held.granted_ttl)
        if deadline != held.credentials.deadline:
            held.credentials = held.credentials.with_deadline(deadline)
            self.current = held.credentials

    def _failed(self, exc: errors.VaultDBError) -> None:
        self._failures += 1
        now = time.monotonic()
        left = self.current.seconds_left(now) if self.current else None
        delay = self.backoff.delay(self._failures, unit=random.uniform(-1, 1),
                                   time_left=left if left and left > 0 else None)
        if not exc.retryable:
            # Slow down for errors that need a human (policy, config), but still try again
            # before the credentials run out: a rewritten token file must be picked up in time.
            floor = self.backoff.maximum / 2
            if left is not None and left > 0:
                floor = min(floor, max(left / 2, 1.0))
            delay = max(delay, floor)
        self._retry_at = now + delay
        self._record_error(exc, "maintain credentials", will_retry=True)
        level = logging.WARNING if left is None or left > delay else logging.ERROR
        logger.log(level, "vaultdb: %s (attempt %d); current credentials valid for %s; retry in "
                   "%.1fs", exc, self._failures, f"{left:.1f}s" if left is not None else "n/a",
                   delay)

    def _record_error(self, exc: errors.VaultDBError, operation: str, *, will_retry: bool) -> None:
        self.counters.errors += 1
        self.last_error, self.last_error_at = exc, time.time()
        self._emit(ev.LeaseError(self.role, exc, operation, will_retry))

    def _report_expiry(self, now: float) -> None:
        creds = self.current
        if creds is None or creds.is_valid(now) or self._expired_reported:
            return
        self._expired_reported = True
        logger.error("database credentials for role %r (user %r) expired before they could be "
                     "replaced: new connections fail until Vault answers again", self.role,
                     creds.username)
        self._emit(ev.LeaseExpired(self.role, creds))

    def _next_due(self, now: float) -> float:
        times = [h.revoke_at for h in self._retiring if h.revoke_at is not None]
        if self._held is not None:
            held = self._held
            if self.static:
                due = plan_static_refresh(read_at=held.granted_at, ttl=held.granted_ttl,
                                          grace=STATIC_GRACE)
            elif self._force_rotate:
                due = now
            else:
                due = self._plan(held).at
            token = self.token
            if token is not None:
                t = plan_token_renewal(granted_at=token.issued_at, ttl=token.ttl,
                                       renewable=token.renewable,
                                       capped=token.max_deadline is not None, policy=self.policy,
                                       unit=self._token_unit)
                if t is not None:
                    due = min(due, t)
            if self._retry_at is not None:
                due = max(due, self._retry_at)
            times.append(due)
            if not self._expired_reported and self.current is not None:
                times.append(self.current.deadline)
        return max(0.0, min(times, default=math.inf) - now)
