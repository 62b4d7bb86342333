"""The one retry and backoff policy: in-place retries (tenacity) and the planner's backoff.

Two places wait after a failure, and both draw from :class:`RetryPolicy`:

* a Vault call retried in place (:mod:`vaultdb._vault`, through tenacity), a few times
  within the caller's deadline;
* the engine's planner, which schedules the next maintenance attempt after a failed one.

Delays grow exponentially with jitter, are never shorter than ``minimum`` (no tight loop
against a struggling Vault, the Go LifetimeWatcher's storm) and never longer than
``maximum``. Once nothing valid is left the cap drops to ``urgent_maximum``, so service
returns within seconds of Vault's return instead of after a long backoff.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._clock import Clock

if TYPE_CHECKING:
    import tenacity

__all__ = ["RetryPolicy"]


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff values shared by in-place retries and the planner."""

    initial: float = 0.25
    multiplier: float = 2.0
    #: Longest wait while the current credentials are still valid.
    maximum: float = 30.0
    #: Longest wait once no valid credentials are left.
    urgent_maximum: float = 3.0
    minimum: float = 0.1
    #: Spread of each delay as a fraction of it (0.25: +/- 25 %).
    jitter: float = 0.25
    #: Attempts of one call retried in place (the first one included).
    attempts: int = 3

    def delay(self, attempt: int, *, unit: float = 0.0, time_left: float | None = None,
              urgent: bool = False) -> float:
        """Delay before retry number ``attempt`` (1-based); ``unit`` in [-1, 1] spreads it.

        ``time_left`` (seconds until the credentials this protects run out) halves the cap,
        so a retry still happens before they do.
        """
        cap = self.urgent_maximum if urgent else self.maximum
        base = self.initial * self.multiplier ** max(0, min(attempt - 1, 64))
        base = min(base, cap) * (1 + self.jitter * max(-1.0, min(1.0, unit)))
        if time_left is not None and time_left > 0:
            base = min(base, time_left / 2)
        return max(self.minimum, min(base, cap))

    def retrying(self, *, clock: Clock, deadline: float, retry_if: Callable[[BaseException], bool],
                 before_sleep: Callable[[tenacity.RetryCallState], None],
                 attempts: int | None = None, rng: random.Random | None = None
                 ) -> tenacity.Retrying:
        """A tenacity loop for one call: ``attempts`` tries, none starting past ``deadline``.

        Waits come from :meth:`delay` and are cut to the time left; time is ``clock``'s, so the
        simulation's virtual clock drives tenacity too.
        """
        import tenacity  # on the first failed Vault call only (docs/benchmarks-agent.md)

        draw = rng.uniform if rng is not None else random.uniform
        limit = self.attempts if attempts is None else attempts

        def wait(state: tenacity.RetryCallState) -> float:
            pause = self.delay(state.attempt_number, unit=draw(-1.0, 1.0))
            return max(0.0, min(pause, deadline - clock.monotonic()))

        def stop(state: tenacity.RetryCallState) -> bool:
            left = deadline - clock.monotonic()
            return state.attempt_number >= limit or left <= self.minimum

        return tenacity.Retrying(stop=stop, wait=wait, sleep=clock.sleep,
                                 retry=tenacity.retry_if_exception(retry_if),
                                 before_sleep=before_sleep, reraise=True)
