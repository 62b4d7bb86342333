"""The lease book: the credentials this process holds, those draining, and when to revoke.

Pure bookkeeping, no Vault calls and no clock reads: the engine passes times in. A held lease
names the login token that created it by accessor (never a copy of the token, whose expiry
changes with every renewal), and the engine asks the login session whether it is alive.
"""

from __future__ import annotations

from dataclasses import dataclass

from .credentials import Credentials, wall_clock

__all__ = ["DEADLINE_MARGIN", "HeldLease", "LeaseBook"]

#: Seconds kept in hand before a lease's or token's end (Vault's whole-second arithmetic).
DEADLINE_MARGIN = 1.0


@dataclass(eq=False)  # each held lease is its own thing: compared by identity
class HeldLease:
    """One set of credentials this process holds, and its timing on the monotonic clock."""

    credentials: Credentials
    #: Accessor of the login token that created the lease (``None`` for static roles).
    token_accessor: str | None
    granted_at: float
    granted_ttl: float
    original_ttl: float
    #: Random number in [-1, 1] spreading this lease's renewal time (drawn per renewal).
    unit: float = 0.0
    #: Known ``max_ttl`` end, once a renewal came back shorter than asked.
    cap_end: float | None = None
    #: When a retired lease is revoked (end of its drain window); ``None`` while current.
    revoke_at: float | None = None
    revoke_attempts: int = 0
    #: When Vault issued these credentials (renewals move ``granted_at``, never this).
    issued_at: float = 0.0

    @classmethod
    def issued(cls, username: str, password: str, lease_id: str | None, ttl: float,
               renewable: bool, accessor: str | None, now: float, *, static: bool,
               unit: float) -> HeldLease:
        """What Vault just issued (``now`` is when the request was sent)."""
        creds = Credentials(username=username, password=password, lease_id=lease_id,
                            lease_duration=ttl, expires_at=wall_clock(now), generation=0,
                            renewable=renewable, static=static)
        return cls(creds, accessor, now, ttl, ttl, unit=unit, issued_at=now)

    @property
    def expires(self) -> float:
        return self.granted_at + self.granted_ttl

    def with_deadline(self, token_end: float | None, *, now: float, wall: float) -> Credentials:
        """The credentials, valid until the lease ends or ``token_end``, whichever is first.

        Vault counts TTLs from the whole second of its clock in which it issued them, up to a
        second before the request was sent: the deadline keeps that second in hand (a tenth
        of the TTL for very short ones).
        """
        end = self.expires if token_end is None else min(self.expires, token_end)
        end -= min(DEADLINE_MARGIN, 0.1 * self.granted_ttl)
        return self.credentials.with_deadline(end, self.granted_ttl, now=now, wall=wall)

    @property
    def lease_id(self) -> str | None:
        return self.credentials.lease_id


class LeaseBook:
    """The current lease and the retiring ones (see the module doc)."""

    def __init__(self) -> None:
        self.current: HeldLease | None = None
        self.retiring: list[HeldLease] = []

    def all(self) -> list[HeldLease]:
        return [h for h in [self.current, *self.retiring] if h is not None]

    def accessors_in_use(self) -> set[str]:
        return {h.token_accessor for h in self.all() if h.token_accessor}

    def adopt(self, new: HeldLease) -> HeldLease | None:
        """Make ``new`` current; return the lease it replaces."""
        old, self.current = self.current, new
        return old

    def retire(self, held: HeldLease, revoke_at: float) -> None:
        """Keep ``held`` valid for the drain window, then revoke it at ``revoke_at``."""
        if held.lease_id is None:
            return  # static credentials: nothing to revoke
        held.revoke_at = revoke_at
        self.retiring.append(held)

    def due(self, now: float) -> list[HeldLease]:
        return [h for h in self.retiring if h.revoke_at is not None and h.revoke_at <= now]

    def next_revocation(self) -> float | None:
        times = [h.revoke_at for h in self.retiring if h.revoke_at is not None]
        return min(times) if times else None

    def forget(self, held: HeldLease) -> None:
        if held in self.retiring:
            self.retiring.remove(held)
        if held is self.current:
            self.current = None

    def clear(self) -> None:
        self.current, self.retiring = None, []
