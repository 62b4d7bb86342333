"""Property tests for the pure timing rules (no clock, no Vault)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from vaultdb._schedule import (
    Backoff,
    LeaseAction,
    SchedulePolicy,
    plan_lease,
    plan_token_renewal,
    renew_increment,
    renewal_time,
    retire_time,
    rotation_lead,
    token_needs_relogin,
)

times = st.floats(min_value=0, max_value=1e7, allow_nan=False)
ttls = st.floats(min_value=0.1, max_value=40 * 86400, allow_nan=False)
units = st.floats(min_value=-1, max_value=1, allow_nan=False)
policies = st.builds(
    SchedulePolicy,
    renew_fraction=st.floats(min_value=0.3, max_value=0.9),
    jitter=st.floats(min_value=0, max_value=0.3),
    drain_seconds=st.floats(min_value=0, max_value=600),
)


@given(times, ttls, ttls, st.booleans(), st.one_of(st.none(), times), policies, units)
def test_lease_action_never_after_its_deadline(granted_at, granted, original, renewable,
                                               hard_end, policy, unit):
    plan = plan_lease(granted_at=granted_at, granted_ttl=granted, original_ttl=original,
                      renewable=renewable, hard_end=hard_end, policy=policy, unit=unit)
    assert plan.at <= granted_at + granted + 1e-6  # never after the lease expires
    if hard_end is not None and hard_end >= granted_at:
        assert plan.at <= max(hard_end, granted_at) + 1e-6


@given(times, ttls, ttls, st.booleans(), st.floats(min_value=0.1, max_value=1e6), policies, units)
def test_fresh_credentials_are_never_rotated_straight_away(granted_at, granted, original,
                                                          renewable, end_in, policy, unit):
    """Whatever the hard end, at least 2/3 of the usable life passes before a rotation."""
    hard_end = granted_at + end_in
    plan = plan_lease(granted_at=granted_at, granted_ttl=granted, original_ttl=original,
                      renewable=renewable, hard_end=hard_end, policy=policy, unit=unit)
    expires = granted_at + granted
    # A lease granted (almost) up to the hard end cannot be extended: it is usable until expiry.
    extendable = renewable and expires < hard_end - 0.5
    usable = (hard_end if extendable else min(hard_end, expires)) - granted_at
    if plan.action is LeaseAction.ROTATE:
        assert plan.at - granted_at >= usable * (1 - policy.max_lead_fraction) - 1e-6


@given(times, ttls, policies, units)
def test_renewal_lands_inside_the_ttl_near_two_thirds(granted_at, ttl, policy, unit):
    at = renewal_time(granted_at, ttl, policy, unit)
    assert granted_at <= at < granted_at + ttl
    nominal = policy.renew_fraction * ttl
    assert abs((at - granted_at) - nominal) <= nominal * policy.jitter + 1e-6


@given(ttls, policies)
def test_rotation_lead_is_at_most_a_third_of_the_ttl(ttl, policy):
    assert 0 <= rotation_lead(ttl, policy) <= ttl / 3 + 1e-9


@given(ttls, policies)
def test_renew_increment_asks_for_at_least_the_original_ttl(ttl, policy):
    assert renew_increment(ttl, policy) >= ttl


def test_renewable_lease_without_hard_end_is_renewed_at_two_thirds():
    policy = SchedulePolicy(jitter=0)
    plan = plan_lease(granted_at=100, granted_ttl=30, original_ttl=30, renewable=True,
                      hard_end=None, policy=policy)
    assert plan.action is LeaseAction.RENEW
    assert plan.at == 120


def test_known_hard_end_rotates_one_lead_before_it():
    policy = SchedulePolicy(jitter=0, drain_seconds=5)
    lead = rotation_lead(60, policy)
    plan = plan_lease(granted_at=0, granted_ttl=60, original_ttl=60, renewable=True,
                      hard_end=50, policy=policy)
    assert plan.action is LeaseAction.ROTATE
    assert plan.at == 50 - lead


def test_capped_renewal_is_seen_with_at_least_one_lead_left():
    """Asking for ttl + lead makes the max_ttl cap visible before it is too late to drain."""
    policy = SchedulePolicy(jitter=0, drain_seconds=1)
    ttl, max_ttl = 3.0, 9.0
    now, expires, cap_seen_with = 0.0, ttl, None
    asked = renew_increment(ttl, policy)
    while cap_seen_with is None:
        now = renewal_time(now, expires - now, policy, 0)
        granted = min(asked, max_ttl - now)
        if granted < asked:
            cap_seen_with = granted
        expires = now + granted
    assert cap_seen_with >= rotation_lead(ttl, policy)


@given(st.integers(min_value=1, max_value=50), units,
       st.one_of(st.none(), st.floats(min_value=0.01, max_value=1e5)))
def test_backoff_is_bounded_and_never_a_tight_loop(attempt, unit, left):
    b = Backoff()
    d = b.delay(attempt, unit=unit, time_left=left)
    assert b.minimum <= d <= b.maximum
    if left is not None and left / 2 >= b.minimum:
        assert d <= left / 2 + 1e-9


def test_backoff_grows():
    b = Backoff(jitter=0)
    assert b.delay(1) < b.delay(2) < b.delay(3)


@given(times, times, policies)
def test_retired_credentials_are_revoked_after_drain_but_not_after_expiry(now, old_deadline,
                                                                          policy):
    at = retire_time(now=now, old_deadline=old_deadline, policy=policy)
    assert at >= now
    assert at <= max(now, old_deadline)
    assert at <= now + policy.drain_seconds + 1e-6


def test_token_renewal_rules():
    policy = SchedulePolicy(jitter=0)
    assert plan_token_renewal(granted_at=0, ttl=60, renewable=True, capped=False,
                              policy=policy) == 40
    assert plan_token_renewal(granted_at=0, ttl=60, renewable=False, capped=False,
                              policy=policy) is None
    assert plan_token_renewal(granted_at=0, ttl=0, renewable=True, capped=False,
                              policy=policy) is None
    assert plan_token_renewal(granted_at=0, ttl=60, renewable=True, capped=True,
                              policy=policy) is None


def test_relogin_when_token_ends_before_a_new_lease_could_be_used():
    policy = SchedulePolicy(drain_seconds=1)
    assert token_needs_relogin(now=0, token_hard_end=2, token_expires=2, lease_ttl=30,
                               policy=policy)
    assert not token_needs_relogin(now=0, token_hard_end=None, token_expires=600, lease_ttl=30,
                                   policy=policy)
    assert token_needs_relogin(now=0, token_hard_end=None, token_expires=0.5, lease_ttl=30,
                               policy=policy)
