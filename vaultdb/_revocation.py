"""Revoking what the engine holds: drained leases during life, everything at shutdown.

A part of :class:`vaultdb._engine.LeaseEngine`, kept apart so each file reads on its own. A
lease is skipped only when the login token that created it is known to be dead (Vault revoked
the lease with it); whether it is dead is asked of the login session, by accessor, at the
moment of revocation, never read from a copy taken when the lease was fetched.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from . import errors
from . import events as ev
from ._clock import Clock, LockLike
from ._leases import HeldLease, LeaseBook
from ._retry import RetryPolicy
from ._session import LoginSession, SessionUser
from .credentials import Credentials

__all__ = ["Counters", "Revocations"]

logger = logging.getLogger("vaultdb.lease")

#: Attempts of one drained lease's revocation during life before it is left to its TTL.
MAX_REVOKE_ATTEMPTS = 5
#: Attempts of a revocation at exit: as many as the budget allows.
EXIT_ATTEMPTS = 1000


@dataclass(eq=False)
class Counters:
    """What this provider asked of Vault so far (for status() and the metrics)."""

    fetches: int = 0
    renewals: int = 0
    rotations: int = 0
    revocations: int = 0
    #: Credentials reads that got no answer after they may have reached Vault.
    orphans_suspected: int = 0


class Revocations:
    """Revocation of drained leases and shutdown, for :class:`~vaultdb._engine.LeaseEngine`."""

    role: str
    book: LeaseBook
    session: LoginSession
    counters: Counters
    clock: Clock
    retry: RetryPolicy
    lock: LockLike
    closed: bool
    current: Credentials | None
    request_timeout: float
    _emit: Callable[[ev.LeaseEvent], None]
    user: SessionUser

    def _revoke_drained(self, now: float) -> None:
        deadline = now + 2 * self.request_timeout
        for held in self.book.due(now):
            try:
                self._revoke(held, deadline)
            except errors.VaultDBError as exc:
                held.revoke_attempts += 1
                if held.revoke_attempts < MAX_REVOKE_ATTEMPTS and exc.retryable:
                    held.revoke_at = self.clock.monotonic() + self.retry.delay(
                        held.revoke_attempts)
                    continue
                logger.warning("could not revoke lease %s (%s); it expires at its TTL",
                               held.lease_id, exc)
            self.book.forget(held)
        self.session.release_unused(deadline)

    def _revoke(self, held: HeldLease, deadline: float, attempts: int | None = None) -> None:
        creds = held.credentials
        if creds.lease_id is None:
            return
        now = self.clock.monotonic()
        if not self.session.alive(held.token_accessor, now):
            # Vault revoked the lease together with the token that created it.
            logger.debug("lease %s ended with its login token; nothing to revoke",
                         creds.lease_id)
            return
        token = self.session.request_token(now)
        try:
            self.session.vault.revoke_lease(creds.lease_id, token, deadline=deadline,
                                            attempts=attempts, role=self.role,
                                            generation=creds.generation)
        except errors.LeaseNotFoundError:
            logger.debug("lease %s was already gone", creds.lease_id)
            return
        self.counters.revocations += 1
        logger.info("revoked lease %s (user %r, generation %d)", creds.lease_id, creds.username,
                    creds.generation)
        self._emit(ev.LeaseRevoked(self.role, creds))

    def shutdown(self, deadline: float) -> None:
        """Revoke every lease and owned token this process holds, by ``deadline``."""
        self.closed = True  # before waiting: a fetch in flight is the last one
        if not self.lock.acquire(timeout=max(0.0, deadline - self.clock.monotonic())):
            logger.warning("vaultdb: could not revoke in time (a Vault call is in flight); "
                           "leases will expire at their TTL")
            return
        try:
            for held in self.book.all():
                if self.clock.monotonic() >= deadline:
                    logger.warning("vaultdb: revocation budget used up; lease %s expires at "
                                   "its TTL", held.lease_id)
                    continue
                try:
                    self._revoke(held, deadline, attempts=EXIT_ATTEMPTS)
                except errors.VaultDBError as exc:
                    logger.warning("could not revoke lease %s at exit: %s", held.lease_id, exc)
            self.session.detach(self.user, deadline)
            if self.counters.orphans_suspected and not (
                    self.session.token is None or self.session.token.owned):
                logger.warning("%d credentials request(s) without an answer may have left a "
                               "lease in Vault; it expires at the role's TTL",
                               self.counters.orphans_suspected)
            self.book.clear()
            self.current = None
        finally:
            self.lock.release()
