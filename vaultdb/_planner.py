"""The planner: from a snapshot of the engine's state, the next action and when it is due.

A pure function (:func:`plan`) over a frozen :class:`EngineView`, so the whole decision of
"what next" can be tested, and the simulation can check it at every step. The timing rules
themselves live in :mod:`vaultdb._schedule`.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from ._schedule import LeaseAction, SchedulePolicy, plan_lease, plan_static_refresh

__all__ = ["MAX_AGE", "MAX_TTL_END", "STATIC_GRACE", "TOKEN_END", "Action", "EngineView", "Plan",
           "plan"]

#: Re-read a static role this long after Vault's rotation time.
STATIC_GRACE = 0.5
#: Why a rotation is due: the lease's ``max_ttl`` cap, the login token's end, or the
#: credentials' maximum age (``rotate_after``).
MAX_TTL_END = "max_ttl ahead"
TOKEN_END = "login token end ahead"
MAX_AGE = "maximum credential age reached"


class Action(enum.Enum):
    REVOKE_RETIRED = "revoke retired credentials"
    RENEW_TOKEN = "renew the login token"
    ROTATE = "rotate credentials"
    RENEW_LEASE = "renew the lease"
    REREAD_STATIC = "re-read the static password"
    REPORT_EXPIRY = "report expired credentials"
    IDLE = "nothing"


@dataclass(frozen=True)
class Plan:
    """The next action, when it is due (monotonic seconds), and why."""

    action: Action
    at: float
    reason: str = ""


@dataclass(frozen=True)
class EngineView:
    """What the planner needs to know, copied out of the engine under its lock."""

    static: bool
    #: The current lease: granted_at, granted_ttl, original_ttl, renewable, cap_end, unit.
    lease: tuple[float, float, float, bool, float | None, float] | None
    token_renewal_at: float | None
    token_hard_end: float | None
    next_revocation: float | None
    force_rotate: str | None
    retry_at: float | None
    #: Deadline of the current credentials, while their expiry has not been reported yet.
    unreported_deadline: float | None
    #: When the current credentials reach their maximum age (``rotate_after``), if set.
    max_age_at: float | None = None


def plan(now: float, view: EngineView, policy: SchedulePolicy) -> Plan:
    """The earliest due action; revocations first, maintenance held back while backing off."""
    candidates: list[Plan] = []
    if view.next_revocation is not None:
        candidates.append(Plan(Action.REVOKE_RETIRED, view.next_revocation))
    if view.lease is not None:
        candidates.append(_maintenance(now, view, policy))
    if view.unreported_deadline is not None:
        candidates.append(Plan(Action.REPORT_EXPIRY, view.unreported_deadline))
    if not candidates:
        return Plan(Action.IDLE, math.inf)
    return min(candidates, key=lambda p: p.at)


def _maintenance(now: float, view: EngineView, policy: SchedulePolicy) -> Plan:
    assert view.lease is not None
    granted_at, granted_ttl, original_ttl, renewable, cap_end, unit = view.lease
    if view.force_rotate:
        chosen = Plan(Action.ROTATE, now, view.force_rotate)
    elif not view.static and now >= granted_at + granted_ttl:
        # Past its expiry a lease cannot be renewed (or re-read as the same static
        # password): fetch fresh credentials instead.
        chosen = Plan(Action.ROTATE, now, "expired")
    elif view.static:
        chosen = Plan(Action.REREAD_STATIC,
                      plan_static_refresh(read_at=granted_at, ttl=granted_ttl,
                                          grace=STATIC_GRACE), "static password re-read")
    else:
        token_end = view.token_hard_end
        ends = [t for t in (cap_end, token_end) if t is not None]
        lease = plan_lease(granted_at=granted_at, granted_ttl=granted_ttl,
                           original_ttl=original_ttl, renewable=renewable,
                           hard_end=min(ends) if ends else None, policy=policy, unit=unit)
        why = TOKEN_END if token_end is not None and token_end == min(ends) else MAX_TTL_END
        chosen = (Plan(Action.ROTATE, lease.at, why) if lease.action is LeaseAction.ROTATE
                  else Plan(Action.RENEW_LEASE, lease.at))
        if view.max_age_at is not None and view.max_age_at <= chosen.at:
            chosen = Plan(Action.ROTATE, view.max_age_at, MAX_AGE)
    if view.token_renewal_at is not None and view.token_renewal_at < chosen.at:
        chosen = Plan(Action.RENEW_TOKEN, view.token_renewal_at)
    if view.retry_at is not None and chosen.at < view.retry_at:
        chosen = Plan(chosen.action, view.retry_at, chosen.reason)
    return chosen
