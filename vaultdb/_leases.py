"""The lease book: the credentials this process holds, those draining, and when to revoke.

Pure bookkeeping, no Vault calls and no clock reads: the engine passes times in. A held lease
names the login token that created it by accessor (never a copy of the token, whose expiry
changes with every renewal), and the engine asks the login session whether it is alive.
"""

from __future__ import annotations

from dataclasses import dataclass

from .credentials import Credentials

__all__ = ["HeldLease", "LeaseBook"]


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

    @property
    def expires(self) -> float:
        return self.granted_at + self.granted_ttl

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
