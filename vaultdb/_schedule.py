"""Pure timing math for leases and login tokens: no I/O, no threads, no clock reads.

All times are seconds on the monotonic clock, passed in by the caller, so the rules can be
property-tested with made-up clocks. The rules:

* Renew at ``renew_fraction`` (2/3) of what Vault granted, with +/- ``jitter`` spread so a
  fleet started together does not renew together.
* Ask for a little more than the lease's original TTL on each renewal (``headroom``): when
  Vault's ``max_ttl`` cap is near, the renewal comes back shorter than asked while there is
  still at least ``rotation_lead`` left, which is when the hard end becomes known.
* Once a hard end is known (capped renewal, non-renewable lease, or a login token that cannot
  be renewed past it), rotate ``rotation_lead`` before it: the drain window plus a margin for
  fetching the replacement, never more than a third of the lease's TTL.
* Nothing is ever scheduled after the deadline it protects.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

__all__ = [
    "Backoff",
    "LeaseAction",
    "LeasePlan",
    "SchedulePolicy",
    "plan_lease",
    "plan_static_refresh",
    "plan_token_renewal",
    "renew_increment",
    "renewal_time",
    "retire_time",
    "rotation_lead",
    "token_needs_relogin",
]


@dataclass(frozen=True)
class SchedulePolicy:
    """Tunable timing knobs; the defaults suit TTLs from seconds to days."""

    renew_fraction: float = 2 / 3
    #: Spread of renewal times as a fraction of the interval (0.1: +/- 10 %).
    jitter: float = 0.1
    #: How long retired credentials stay valid so pools can replace their connections.
    drain_seconds: float = 30.0
    #: Time kept in hand for fetching replacement credentials before a hard end.
    min_margin: float = 1.0
    margin_fraction: float = 0.1
    #: Rotation never starts earlier than this fraction of the lease TTL before the end.
    max_lead_fraction: float = 1 / 3

    def __post_init__(self) -> None:
        if not 0 < self.renew_fraction < 1:
            raise ValueError("renew_fraction must be between 0 and 1")
        if not 0 <= self.jitter < 0.5:
            raise ValueError("jitter must be in [0, 0.5)")
        if self.drain_seconds < 0:
            raise ValueError("drain_seconds must not be negative")


def renewal_time(granted_at: float, ttl: float, policy: SchedulePolicy, unit: float) -> float:
    """When to renew something Vault granted for ``ttl`` seconds at ``granted_at``.

    ``unit`` is a random number in [-1, 1] that spreads renewals (the caller draws it, so
    tests can pin it).
    """
    unit = max(-1.0, min(1.0, unit))
    fraction = policy.renew_fraction * (1 + policy.jitter * unit)
    return granted_at + max(0.0, ttl) * min(fraction, 0.95)


def rotation_lead(lease_ttl: float, policy: SchedulePolicy) -> float:
    """How long before a hard end to fetch replacement credentials."""
    ttl = max(0.0, lease_ttl)
    lead = policy.drain_seconds + max(policy.min_margin, ttl * policy.margin_fraction)
    return min(lead, ttl * policy.max_lead_fraction)


def renew_increment(original_ttl: float, policy: SchedulePolicy) -> int:
    """The increment to ask for when renewing: the original TTL plus the rotation lead.

    The extra makes Vault's ``max_ttl`` cap visible early (the grant comes back short).
    """
    return max(1, math.ceil(original_ttl + rotation_lead(original_ttl, policy)))


class LeaseAction(enum.Enum):
    RENEW = "renew"
    ROTATE = "rotate"


@dataclass(frozen=True)
class LeasePlan:
    """What to do with a lease next, and when (monotonic seconds)."""

    action: LeaseAction
    at: float


def plan_lease(
    *,
    granted_at: float,
    granted_ttl: float,
    original_ttl: float,
    renewable: bool,
    hard_end: float | None,
    policy: SchedulePolicy,
    unit: float = 0.0,
) -> LeasePlan:
    """What to do next with the current lease, and when.

    ``hard_end`` is the time past which the credentials cannot live whatever we do (the
    ``max_ttl`` cap once known, or the login token's end); ``None`` when unknown. The lease's
    own expiry is ``granted_at + granted_ttl``. The returned time never exceeds either.
    """
    expires = granted_at + max(0.0, granted_ttl)
    end = expires if not renewable else math.inf
    if hard_end is not None:
        end = min(end, hard_end)
    lead = rotation_lead(original_ttl, policy)
    if math.isfinite(end):
        # A hard end closer than the TTL (a short-lived login token) shrinks the lead too, so
        # fresh credentials are never rotated straight away (no fetch loop).
        lead = min(lead, max(0.0, end - granted_at) * policy.max_lead_fraction)
    rotate_at = end - lead
    # A lease already granted up to the hard end cannot be extended: renewing it again only
    # shrinks the grant until Vault refuses ("past the max TTL"), so rotate instead.
    if renewable and (hard_end is None or expires < hard_end - 0.5):
        renew_at = min(renewal_time(granted_at, granted_ttl, policy, unit), expires)
        if renew_at < rotate_at:
            return LeasePlan(LeaseAction.RENEW, renew_at)
    return LeasePlan(LeaseAction.ROTATE, max(min(rotate_at, expires), granted_at))


def plan_token_renewal(
    *, granted_at: float, ttl: float, renewable: bool, capped: bool, policy: SchedulePolicy,
    unit: float = 0.0,
) -> float | None:
    """When to renew the login token; ``None`` when renewing cannot help.

    A token that never expires (ttl 0), is not renewable, or whose last renewal was capped is
    not renewed: the lease plan rotates (with a re-login) before its end instead.
    """
    if ttl <= 0 or not renewable or capped:
        return None
    return renewal_time(granted_at, ttl, policy, unit)


def token_needs_relogin(
    *, now: float, token_hard_end: float | None, token_expires: float | None,
    lease_ttl: float, policy: SchedulePolicy,
) -> bool:
    """Whether to log in again before fetching a lease.

    True when the token is gone or will end so soon that a lease fetched under it would have to
    rotate again straight away (leases die with the token that created them).
    """
    if token_expires is not None and token_expires - now <= policy.min_margin:
        return True
    if token_hard_end is None:
        return False
    need = 2 * rotation_lead(lease_ttl, policy) + policy.min_margin
    return token_hard_end - now < need


def retire_time(*, now: float, old_deadline: float, policy: SchedulePolicy) -> float:
    """When to revoke retired credentials: after the drain window, before they would expire."""
    return max(now, min(now + policy.drain_seconds, old_deadline))


def plan_static_refresh(*, read_at: float, ttl: float, grace: float = 0.5) -> float:
    """When to re-read a static role: just after Vault's next rotation of the password."""
    return read_at + max(0.0, ttl) + grace


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter, capped by the time actually left.

    Never shorter than ``minimum`` (no tight loops against a struggling Vault), never longer
    than ``maximum``, and never more than half of ``time_left`` so a retry still happens
    before the credentials run out.
    """

    initial: float = 0.5
    multiplier: float = 2.0
    maximum: float = 30.0
    minimum: float = 0.1
    jitter: float = 0.25

    def delay(self, attempt: int, *, unit: float = 0.0, time_left: float | None = None) -> float:
        """Delay before retry number ``attempt`` (1-based); ``unit`` in [-1, 1] spreads it."""
        base = self.initial * self.multiplier ** max(0, attempt - 1)
        base = min(base, self.maximum) * (1 + self.jitter * max(-1.0, min(1.0, unit)))
        if time_left is not None and time_left > 0:
            base = min(base, time_left / 2)
        return max(self.minimum, min(base, self.maximum))
