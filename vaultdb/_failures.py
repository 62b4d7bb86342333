"""Failures of background maintenance: the backoff they earn and the last error, for status.

Part of the lease engine. After a failed renewal or rotation the planner holds maintenance
back until :attr:`FailureState.retry_at`. Delays come from the one
:class:`~vaultdb._retry.RetryPolicy`: exponential while the current credentials are valid
(never past half the time they have left), capped at a few seconds once nothing valid is left,
so service returns within seconds of Vault's return.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

from . import errors
from . import events as ev
from ._clock import Clock
from ._retry import RetryPolicy
from .credentials import Credentials

__all__ = ["FailureState"]

logger = logging.getLogger("vaultdb.lease")


class FailureState:
    """Consecutive failures, when to try again, and the last error (see the module doc)."""

    def __init__(self, *, role: str, retry: RetryPolicy, clock: Clock, rng: random.Random,
                 emit: Callable[[ev.LeaseEvent], None]) -> None:
        self.role, self.retry, self.clock, self.rng, self._emit = role, retry, clock, rng, emit
        self.failures = 0
        self.count = 0
        self.retry_at: float | None = None
        self.last_error: errors.VaultDBError | None = None
        self.last_error_at: float | None = None

    def succeeded(self) -> None:
        self.failures, self.retry_at = 0, None

    def record(self, exc: errors.VaultDBError, operation: str, *, will_retry: bool) -> None:
        """Count the error, keep it for status(), and tell listeners (LeaseError)."""
        self.count += 1
        self.last_error, self.last_error_at = exc, self.clock.time()
        self._emit(ev.LeaseError(self.role, exc, operation, will_retry))

    def failed(self, exc: errors.VaultDBError, current: Credentials | None) -> None:
        """A maintenance action failed: back off, then try again before ``current`` ends."""
        self.failures += 1
        now = self.clock.monotonic()
        left = current.seconds_left(now) if current else None
        valid = left is not None and left > 0
        # Once nothing valid is left, retry an outage every few seconds (service returns as
        # soon as Vault does); an error that needs a human backs off as usual.
        delay = self.retry.delay(self.failures, unit=self.rng.uniform(-1, 1),
                                 time_left=left if valid else None,
                                 urgent=not valid and exc.retryable)
        if not exc.retryable and left is not None and valid:
            # Slow down for errors that need a human (policy, config), but still try again
            # before the credentials run out: a rewritten token file must be picked up in time.
            delay = max(delay, min(self.retry.maximum / 2, left / 2))
        self.retry_at = now + delay
        self.record(exc, "maintain credentials", will_retry=True)
        level = logging.WARNING if left is not None and left > delay else logging.ERROR
        logger.log(level, "vaultdb: %s (attempt %d); current credentials valid for %s; retry in "
                   "%.1fs", exc, self.failures, f"{left:.1f}s" if left is not None else "n/a",
                   delay)

    def report_expiry(self, creds: Credentials | None) -> None:
        """The current credentials ran out before they could be replaced: say so, loudly."""
        if creds is None or creds.deadline <= 0:
            return
        logger.error("database credentials for role %r (user %r) expired before they could be "
                     "replaced: new connections fail until Vault answers again", self.role,
                     creds.username)
        self._emit(ev.LeaseExpired(self.role, creds))
