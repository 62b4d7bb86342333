"""The login session: one Vault token, its renewal, re-login, and the tokens being retired.

Leases refer to the token that created them by its accessor, and ask the session whether
that token is still alive (:meth:`LoginSession.alive`), so a renewal of the token (which
replaces the immutable :class:`~vaultdb.credentials.LoginToken`) is seen by every lease at
once. Old tokens that this process created stay until no held lease was created with them,
then they are revoked.

The session's Vault client carries Vault's consistency index (``X-Vault-Index``, see
:class:`vaultdb._vault.VaultClient`), so a standby that has not yet caught up with this
session's login answers 412 ("not yet", retried) instead of 403 ("no such token").
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import replace

from . import errors
from . import events as ev
from ._clock import Clock
from ._schedule import SchedulePolicy, plan_token_renewal, renew_increment, token_needs_relogin
from ._secret import Secret
from ._vault import VaultClient
from .auth import AuthMethod
from .credentials import LoginToken

__all__ = ["LoginSession"]

logger = logging.getLogger("vaultdb.lease")

#: Old tokens remembered (as dead) after they ended, so a lease of theirs is known as gone.
_DEAD_MEMORY = 64


class LoginSession:
    """One login to Vault and everything that depends on its token (see the module doc)."""

    def __init__(self, auth: AuthMethod, vault: VaultClient, *, clock: Clock,
                 policy: SchedulePolicy, rng: random.Random,
                 emit: Callable[[ev.LeaseEvent], None], role: str) -> None:
        self.auth = auth
        self.vault = vault
        self.clock = clock
        self.policy = policy
        self.rng = rng
        self._emit = emit
        self._role = role
        self.reset()

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

    def ensure(self, *, lease_ttl: float, deadline: float, long_lived: bool) -> LoginToken:
        """A token good enough to fetch a lease under (logs in when there is none)."""
        now = self.clock.monotonic()
        token = self.token
        if token is None or not token.is_alive(now) or (long_lived and token_needs_relogin(
                now=now, token_hard_end=token.max_deadline, token_expires=token.expires,
                lease_ttl=lease_ttl, policy=self.policy)):
            token = self.login(deadline)
        return token

    def login(self, deadline: float) -> LoginToken:
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
        self._emit(ev.LoginCreated(self._role, self.auth.method, result.accessor))
        if old is not None and old.accessor != result.accessor:
            self._old.append(old)
        return self.token

    def renew(self, deadline: float) -> bool:
        """Renew the current token; False when Vault rejected it (it is dropped)."""
        token = self.token
        assert token is not None
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
        self._emit(ev.LoginRenewed(self._role, token.accessor, renewal.ttl))
        return True

    def drop(self, why: str) -> None:
        """The current token is dead (Vault said so): forget it; its leases are gone."""
        token = self.token
        if token is None:
            return
        logger.warning("Vault login token (accessor %s) was %s: logging in again; leases "
                       "created with it are gone, so credentials will rotate", token.accessor,
                       why)
        self._emit(ev.LoginExpired(self._role, token.accessor))
        self._remember_dead(token.accessor, self.clock.monotonic())
        self.token = None

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

    def release_unused(self, in_use: set[str], deadline: float) -> None:
        """Revoke old tokens this process created once no held lease was created with them."""
        for token in list(self._old):
            if token.accessor in in_use:
                continue
            self._old.remove(token)
            self._revoke(token, deadline)
            self._remember_dead(token.accessor, self.clock.monotonic())

    def close(self, deadline: float) -> None:
        """Revoke every token this process created (their leases go with them)."""
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
