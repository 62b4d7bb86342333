"""The login session: one Vault token, its renewal, re-login, and the tokens being retired.

Leases refer to the token that created them by its accessor, and ask the session whether
that token is still alive (:meth:`LoginSession.alive`), so a renewal of the token (which
replaces the immutable :class:`~vaultdb.credentials.LoginToken`) is seen by every lease at
once. Old tokens that this process created stay until no held lease was created with them,
then they are revoked.

The session's Vault client carries Vault's consistency index (``X-Vault-Index``, see
:class:`vaultdb._vault.VaultClient`), so a standby that has not yet caught up with this
session's login forwards the request to the leader (or answers 412/429, "not yet", retried)
instead of 403 ("no such token").

Several providers may share one session (several roles, several databases): one login, one
token renewal stream, each lease still its own. The token is revoked when the last provider
using the session closes; after ``fork`` the session resets once for all of them.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypeVar

from . import _process, errors
from . import events as ev
from ._clock import SYSTEM_CLOCK, Clock
from ._http import Exchange
from ._retry import RetryPolicy
from ._schedule import SchedulePolicy, plan_token_renewal, renew_increment, token_needs_relogin
from ._secret import Secret
from ._vault import VaultClient, VaultSettings
from .auth import AuthMethod, auth_from_env
from .credentials import LoginToken

__all__ = ["LoginSession", "SessionUser"]

logger = logging.getLogger("vaultdb.lease")

_T = TypeVar("_T")

#: Old tokens remembered (as dead) after they ended, so a lease of theirs is known as gone.
_DEAD_MEMORY = 64


@dataclass(eq=False)
class SessionUser:
    """A provider using a session: its role (for events), listeners, and its leases' tokens."""

    role: str
    emit: Callable[[ev.LeaseEvent], None]
    accessors_in_use: Callable[[], set[str]]


class LoginSession:
    """One login to Vault, shareable by several providers (see the module doc).

    ``LoginSession(auth, vault_addr=...)``, then ``CredentialProvider("app-ro", session=s)``
    and ``CredentialProvider("app-rw", session=s)``: one login and one token renewal for both.
    The arguments are those of :class:`~vaultdb.CredentialProvider` that concern the login.
    Constructing it does no I/O.
    """

    def __init__(self, auth: AuthMethod | None = None, *, vault_addr: str | None = None,
                 namespace: str | None = None, verify: bool | str | None = None,
                 request_timeout: float | None = None, renew_fraction: float = 2 / 3,
                 jitter: float = 0.1, _clock: Clock = SYSTEM_CLOCK,
                 _exchange: Exchange | None = None, _rng: random.Random | None = None) -> None:
        settings = VaultSettings.resolve(vault_addr, namespace=namespace, verify=verify,
                                         timeout=request_timeout)
        self.auth = auth if auth is not None else auth_from_env()
        self.clock = _clock
        self.rng = _rng or random.Random()
        self.policy = SchedulePolicy(renew_fraction=renew_fraction, jitter=jitter)
        self.vault = VaultClient(settings, clock=_clock, exchange=_exchange, retry=RetryPolicy(),
                                 rng=self.rng)
        self.lock = _clock.lock()
        self._users: list[SessionUser] = []
        self._pid, self._forks = os.getpid(), _process.forks
        self.reset()

    def __repr__(self) -> str:
        return f"<LoginSession {self.auth.describe()} users={len(self._users)}>"

    # -- who uses it ------------------------------------------------------------------------

    def attach(self, user: SessionUser) -> None:
        with self.lock:
            self._users.append(user)

    def detach(self, user: SessionUser, deadline: float) -> None:
        """A provider closed: its leases are revoked; the last one out revokes the token."""
        with self.lock:
            if user in self._users:
                self._users.remove(user)
            if not self._users:
                self.close(deadline)
            else:
                self.release_unused(deadline)

    def reset_after_fork(self) -> None:
        """Once per fork, whichever of the sharing providers notices it first."""
        if (self._pid, self._forks) != (os.getpid(), _process.forks):
            self._pid, self._forks = os.getpid(), _process.forks
            self.lock = self.clock.lock()
            self.reset()

    def _emit(self, event: Callable[[str], ev.LeaseEvent]) -> None:
        for user in list(self._users):
            user.emit(event(user.role))

    def reset(self) -> None:
        """Forget every token (after fork: the parent's tokens are the parent's)."""
        self.token: LoginToken | None = None
        self._old: list[LoginToken] = []
        self._dead: dict[str, float] = {}  # accessor -> when it was found dead
        self._unit = self.rng.uniform(-1, 1)
        self.vault.forget_index()
        self.vault.token = None
        self.logins = 0

    # -- what the planner and the lease book ask --------------------------------------------

    def renewal_due(self) -> float | None:
        """When the current token should be renewed; ``None`` if renewing cannot help."""
        token = self.token
        if token is None:
            return None
        return plan_token_renewal(granted_at=token.issued_at, ttl=token.ttl,
                                  renewable=token.renewable, capped=token.max_deadline is not None,
                                  policy=self.policy, unit=self._unit)

    def hard_end(self) -> float | None:
        """The time past which the current token cannot be renewed (leases die with it)."""
        return self.token.max_deadline if self.token else None

    def expires(self, accessor: str | None) -> float | None:
        """When the token with ``accessor`` expires or expired (``None``: never, or unknown)."""
        if accessor in self._dead:
            return self._dead[accessor]
        token = self._find(accessor)
        return token.expires if token else None

    def alive(self, accessor: str | None, now: float) -> bool:
        """Whether the token that created a lease may still be alive (so is the lease)."""
        if accessor is None:
            return True
        if accessor in self._dead:
            return False
        token = self._find(accessor)
        return token is None or token.is_alive(now)

    def request_token(self, now: float) -> Secret | None:
        """The token to make a request with: the current one, else a live old one."""
        for token in [self.token, *reversed(self._old)]:
            if token is not None and token.is_alive(now):
                return token.token
        return None

    def _find(self, accessor: str | None) -> LoginToken | None:
        for token in [self.token, *self._old]:
            if token is not None and token.accessor == accessor:
                return token
        return None

    # -- logging in and renewing ------------------------------------------------------------

    def ensure(self, *, lease_ttl: float, deadline: float, long_lived: bool,
               policy: SchedulePolicy) -> LoginToken:
        """A token good enough to fetch a lease under (logs in when there is none)."""
        with self.lock:
            now = self.clock.monotonic()
            token = self.token
            if token is None or not token.is_alive(now) or (long_lived and token_needs_relogin(
                    now=now, token_hard_end=token.max_deadline, token_expires=token.expires,
                    lease_ttl=lease_ttl, policy=policy)):
                token = self.login(deadline)
            return token

    def login(self, deadline: float) -> LoginToken:
        with self.lock:
            return self._login(deadline)

    def _login(self, deadline: float) -> LoginToken:
        now = self.clock.monotonic()  # sent at: Vault's TTL counts from before the answer
        result = self.vault.login(self.auth, deadline=deadline)
        self._dead.pop(result.accessor, None)
        old = self.token
        expires = now + result.ttl if result.ttl > 0 else None
        self.token = LoginToken(token=result.token, accessor=result.accessor, ttl=result.ttl,
                                renewable=result.renewable, issued_at=now, expires=expires,
                                owned=result.owned,
                                max_deadline=None if result.renewable else expires)
        self._unit = self.rng.uniform(-1, 1)
        self.logins += 1
        logger.info("logged in to Vault with %s (token accessor %s, ttl %.0fs, renewable %s)",
                    self.auth.describe(), result.accessor, result.ttl, result.renewable)
        method, accessor = self.auth.method, result.accessor
        self._emit(lambda role: ev.LoginCreated(role, method, accessor))
        if old is not None and old.accessor != result.accessor:
            self._old.append(old)
        return self.token

    def renew(self, deadline: float) -> bool:
        """Renew the current token; False when Vault rejected it (it is dropped)."""
        with self.lock:
            due = self.renewal_due()
            if self.token is not None and (due is None or due > self.clock.monotonic()):
                return True  # a provider sharing this session renewed it already
            return self._renew(deadline)

    def _renew(self, deadline: float) -> bool:
        token = self.token
        if token is None:
            return False
        asked = renew_increment(token.ttl, self.policy)
        now = self.clock.monotonic()
        try:
            renewal = self.vault.renew_self(asked, token.token, deadline=deadline)
        except (errors.PermissionDeniedError, errors.AuthenticationError):
            self.drop("rejected at renewal")
            return False
        capped = renewal.ttl < asked
        self.token = replace(token, ttl=renewal.ttl, issued_at=now,
                             expires=now + renewal.ttl if renewal.ttl > 0 else None,
                             max_deadline=now + renewal.ttl if capped else None)
        self._unit = self.rng.uniform(-1, 1)
        logger.info("renewed Vault login token (accessor %s) for %.0fs%s", token.accessor,
                    renewal.ttl, " (capped by the token's max TTL)" if capped else "")
        accessor, ttl = token.accessor, renewal.ttl
        self._emit(lambda role: ev.LoginRenewed(role, accessor, ttl))
        return True

    def drop(self, why: str) -> None:
        """The current token is dead (Vault said so): forget it; its leases are gone."""
        token = self.token
        if token is None:
            return
        logger.warning("Vault login token (accessor %s) was %s: logging in again; leases "
                       "created with it are gone, so credentials will rotate", token.accessor,
                       why)
        accessor = token.accessor
        self._emit(lambda role: ev.LoginExpired(role, accessor))
        self._remember_dead(token.accessor, self.clock.monotonic())
        self.token = None

    def with_relogin(self, call: Callable[[Secret | None], _T], deadline: float) -> _T:
        """Run a Vault call with the token; on 403 log in again once if the token is dead.

        A 403 is a dead token only when ``lookup-self`` fails too; otherwise the policy is
        the problem and the 403 is raised as it is.
        """
        token = self.token.token if self.token else None
        try:
            return call(token)
        except errors.PermissionDeniedError:
            with self.lock:
                if self.token is not None and self.token.token != token:
                    fresh = self.token  # a provider sharing this session logged in meanwhile
                elif self.token is not None and self.token_works(deadline):
                    raise
                else:
                    logger.warning("Vault denied a request: logging in again once in case "
                                   "the token is no longer valid")
                    self.drop("denied")
                    fresh = self._login(deadline)
            return call(fresh.token)

    def token_works(self, deadline: float) -> bool:
        """Ask Vault whether the current token still works (the default policy allows it)."""
        token = self.token
        if token is None:
            return False
        try:
            self.vault.lookup_self(token.token, deadline=deadline)
        except (errors.PermissionDeniedError, errors.AuthenticationError):
            return False
        except errors.VaultDBError:
            return True  # cannot tell; report the 403 as it is and let the retry decide
        return True

    # -- retiring tokens --------------------------------------------------------------------

    def release_unused(self, deadline: float) -> None:
        """Revoke old tokens this process created once no held lease was created with them."""
        in_use: set[str] = set()
        for user in self._users:
            in_use |= user.accessors_in_use()
        for token in list(self._old):
            if token.accessor in in_use:
                continue
            self._old.remove(token)
            self._revoke(token, deadline)
            self._remember_dead(token.accessor, self.clock.monotonic())

    def close(self, deadline: float) -> None:
        """Revoke every token this process created (their leases go with them).

        Called when the last provider using the session closes.
        """
        for token in [*self._old, *([self.token] if self.token else [])]:
            self._revoke(token, deadline)
            self._remember_dead(token.accessor, self.clock.monotonic())
        self._old, self.token = [], None

    def _revoke(self, token: LoginToken, deadline: float) -> None:
        now = self.clock.monotonic()
        if not token.owned or not token.is_alive(now) or now >= deadline:
            return
        try:
            self.vault.revoke_token(token.token, deadline=deadline, attempts=100)
            logger.info("revoked Vault login token (accessor %s)", token.accessor)
        except errors.VaultDBError as exc:
            logger.warning("could not revoke Vault login token (accessor %s): %s",
                           token.accessor, exc)

    def _remember_dead(self, accessor: str, at: float) -> None:
        self._dead.setdefault(accessor, at)
        while len(self._dead) > _DEAD_MEMORY:
            del self._dead[next(iter(self._dead))]
