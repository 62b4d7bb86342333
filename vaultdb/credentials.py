"""Immutable values: the credentials handed to applications, and the login token's timing.

A :class:`Credentials` object never changes. The provider swaps in a new one (a single
attribute assignment, atomic in CPython) when a lease is renewed, rotated or re-read, so a
connection factory can read it from any thread without a lock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from ._secret import Secret

__all__ = ["Credentials", "LoginToken"]


@dataclass(frozen=True)
class Credentials:
    """One set of database credentials, as issued by Vault.

    ``generation`` grows by one each time the provider gets a *different* username or password
    (a new lease, a rotation, a changed static password); a renewal keeps the generation and
    only moves ``expires_at``. Integrations stamp each connection with the generation it was
    opened with and retire connections whose generation is no longer current.
    """

    username: str
    password: str = field(repr=False)
    lease_id: str | None
    lease_duration: float
    expires_at: datetime
    generation: int
    renewable: bool = False
    static: bool = False
    #: Monotonic deadline (``time.monotonic()``) after which these credentials are not used.
    #: It is the earlier of lease expiry and login-token expiry.
    deadline: float = field(default=0.0, repr=False, compare=False)

    def seconds_left(self, now: float | None = None) -> float:
        """Seconds until these credentials stop being valid (negative when past)."""
        return self.deadline - (time.monotonic() if now is None else now)

    def is_valid(self, now: float | None = None) -> bool:
        """True while the credentials can still open new connections."""
        return self.seconds_left(now) > 0

    def with_deadline(self, deadline: float, lease_duration: float | None = None, *,
                      now: float | None = None, wall: float | None = None) -> Credentials:
        """A copy with a new deadline (after a renewal); same generation, same secret.

        ``now``/``wall`` are the monotonic and wall clocks' readings (the engine's clock).
        """
        now = time.monotonic() if now is None else now
        return Credentials(
            username=self.username,
            password=self.password,
            lease_id=self.lease_id,
            lease_duration=self.lease_duration if lease_duration is None else lease_duration,
            expires_at=wall_clock(deadline, now, wall),
            generation=self.generation,
            renewable=self.renewable,
            static=self.static,
            deadline=deadline,
        )


@dataclass(frozen=True)
class LoginToken:
    """The Vault token this process logged in with, and its timing on the monotonic clock."""

    token: Secret = field(repr=False)
    accessor: str
    ttl: float
    renewable: bool
    issued_at: float
    #: Monotonic expiry; ``None`` for a token that never expires (ttl 0, e.g. a root token).
    expires: float | None
    #: True when this process created the token by logging in, so it may revoke it. A token
    #: handed in (VAULT_TOKEN, an agent's sink file) belongs to someone else: never revoked.
    owned: bool
    #: Known hard end (renewals cannot go past it): set when Vault capped a renewal, or the
    #: token is not renewable.
    max_deadline: float | None = None

    def is_alive(self, now: float) -> bool:
        return self.expires is None or self.expires > now

    def seconds_left(self, now: float | None = None) -> float | None:
        """Seconds until the token expires, or ``None`` if it never does."""
        if self.expires is None:
            return None
        return self.expires - (time.monotonic() if now is None else now)


def wall_clock(deadline: float, now: float | None = None, wall: float | None = None
               ) -> datetime:
    """Convert a monotonic deadline into an aware UTC datetime, for display and status."""
    now = time.monotonic() if now is None else now
    start = datetime.now(timezone.utc) if wall is None else datetime.fromtimestamp(
        wall, timezone.utc)
    return start + timedelta(seconds=max(-1e9, min(deadline - now, 1e9)))
