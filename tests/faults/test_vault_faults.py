"""Vault misbehaving while an app queries: frozen, restarted empty, erroring, unreachable,
its login token revoked, its service-account token expired.

In every scenario where the credentials stayed valid, not one query may fail: queries go to
PostgreSQL, and vaultdb keeps serving the current credentials while it retries in the
background.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest
from faultkit import Scenario, logged

from vaultdb import LeaseExpired, LoginCreated
from vaultdb.testing import FaultProxy, VaultDBStack, database_users_of_role, wait_for

MakeScenario = Callable[..., Scenario]


def test_vault_paused_for_longer_than_a_renewal_interval(scenario: MakeScenario,
                                                         vaultdb_stack: VaultDBStack, caplog):
    s = scenario(default_ttl=10, max_ttl=120)
    first = s.provider.credentials()
    vaultdb_stack.pause_vault()
    try:
        # Frozen from the lease's start until a renewal (due at 2/3 of 10 s +/- 10 %) has
        # timed out: longer than a renewal interval, shorter than the lease.
        wait_for(lambda: logged(caplog, "did not answer in time", "renew the database lease"),
                 timeout=20)
        assert s.provider.credentials() is not None  # the hot path never waits for Vault
    finally:
        vaultdb_stack.resume_vault()
    wait_for(lambda: s.provider.status().renewals >= 1, timeout=15)
    s.load.progressed()
    assert s.provider.credentials().username == first.username  # renewed, not replaced
    assert s.load.failures == []
    s.finish()


def test_vault_killed_and_restarted_empty(scenario: MakeScenario, vaultdb_stack: VaultDBStack,
                                          caplog):
    s = scenario(default_ttl=6, max_ttl=120)
    first = s.provider.credentials()
    vaultdb_stack.restart_vault(reconfigure=True)
    # The next renewal finds neither token nor lease: log in again, fetch fresh credentials.
    wait_for(lambda: s.provider.generation == first.generation + 1, timeout=20)
    assert logged(caplog, "no longer knows lease", "fetching fresh credentials")
    s.load.progressed()
    assert s.load.failures == []
    # The new server never knew the first user, so nothing can revoke it: it outlives the
    # scenario (an operator's clean-up), unusable after VALID UNTIL. It is the only one left.
    s.finish(allowed=frozenset({first.username}))
    _drop_user(vaultdb_stack, first.username)


@pytest.mark.parametrize(("fault", "message"), [
    ("500", "HTTP 500"),
    ("503", "HTTP 503"),
    ("garbage", "malformed answer"),
])
def test_vault_answering_errors_and_garbage(proxy: FaultProxy, scenario: MakeScenario, caplog,
                                            fault: str, message: str):
    s = scenario(default_ttl=9, max_ttl=120, vault_addr=proxy.addr)
    first = s.provider.credentials()
    if fault == "garbage":
        proxy.garbage()
    else:
        proxy.fail(int(fault))
    # One renewal (at about 6 s) fails through all its quick retries, then Vault recovers.
    wait_for(lambda: s.provider.status().errors >= 1, timeout=20)
    proxy.passthrough()
    assert proxy.faults_served() >= 2
    assert logged(caplog, message, "renew the database lease")
    wait_for(lambda: s.provider.status().renewals >= 1, timeout=15)
    s.load.progressed()
    assert s.provider.credentials().username == first.username
    assert s.load.failures == []
    s.finish()


def test_network_to_vault_black_holed(proxy: FaultProxy, scenario: MakeScenario,
                                      vaultdb_stack: VaultDBStack, caplog):
    s = scenario(default_ttl=10, max_ttl=120, vault_addr=proxy.addr, revoke_timeout=2.0)
    first = s.provider.credentials()
    proxy.blackhole()
    done = threading.Event()
    threading.Thread(target=lambda: (s.provider.credentials(), done.set()), daemon=True).start()
    assert done.wait(5), "credentials() waited on a black-holed Vault"
    # The renewal times out after request_timeout (1 s) instead of hanging.
    wait_for(lambda: logged(caplog, "did not answer in time", "renew the database lease"),
             timeout=20)
    proxy.passthrough()
    wait_for(lambda: s.provider.status().renewals >= 1, timeout=15)
    s.load.progressed()
    assert s.provider.credentials().username == first.username
    assert s.load.failures == []

    # Shutting down while the network is gone is bounded too: revocation gives up in time and
    # the lease is left to its TTL.
    s.load.stop()
    s.engine.dispose()
    proxy.blackhole()
    closed = threading.Event()
    threading.Thread(target=lambda: (s.provider.close(), closed.set()), daemon=True).start()
    assert closed.wait(30), "close() hung on a black-holed Vault"
    proxy.passthrough()
    assert logged(caplog, "expires at its TTL") or logged(caplog, "could not revoke")
    assert database_users_of_role(vaultdb_stack, s.role) == {first.username}
    s.finish(leak_timeout=30)  # Vault drops the user when the lease runs out


def test_login_token_revoked_out_of_band(scenario: MakeScenario, vaultdb_stack: VaultDBStack,
                                         caplog):
    s = scenario(default_ttl=9, max_ttl=120)
    logins: list[LoginCreated] = []
    s.provider.subscribe(logins.append, LoginCreated)
    first = s.provider.credentials()
    token = s.provider._engine.session.token
    assert token is not None
    # Right after the login: on a 403 vaultdb asks Vault whether the token still works
    # (lookup-self) instead of guessing from its age (see _with_relogin).
    s.load.progressed(100)
    accessor = token.accessor
    # An operator (or a compromised-token response) revokes the token: Vault revokes its
    # leases with it, which drops the database user and kills its sessions.
    revoked_at = time.monotonic()
    vaultdb_stack.root_client().auth.token.revoke_accessor(accessor)
    wait_for(lambda: first.username not in database_users_of_role(vaultdb_stack, s.role),
             timeout=10)
    wait_for(lambda: (s.provider.generation or 0) > first.generation, timeout=20)
    recovered = time.monotonic()
    assert logins, "no new login after the token was revoked"
    assert logged(caplog, "logging in again")
    s.load.progressed()
    # The credentials died with the token, so queries in flight at that moment may fail;
    # none may fail before the revocation or once fresh credentials are in.
    assert s.load.failures_started_before(revoked_at) == []
    assert s.load.failures_started_after(recovered) == []
    s.finish()


def test_service_account_token_file_replaced_with_an_expired_token(
        scenario: MakeScenario, vaultdb_stack: VaultDBStack, caplog):
    # The login token cannot be renewed past 8 s, so vaultdb must log in again (re-reading
    # the projected token file) before then.
    s = scenario(default_ttl=30, max_ttl=120, token_ttl=8, token_max_ttl=8)
    first = s.provider.credentials()
    vaultdb_stack.write_service_account_token(s.token_path, ttl=-60)
    # The re-login is refused, and the log says why and where to look.
    wait_for(lambda: logged(caplog, "The JWT from", str(s.token_path), "expired",
                            level=logging.WARNING), timeout=20)
    assert s.provider.generation == first.generation
    # The kubelet rewrites the projected token; vaultdb recovers with it.
    vaultdb_stack.write_service_account_token(s.token_path)
    wait_for(lambda: (s.provider.generation or 0) > first.generation, timeout=30)
    recovered = time.monotonic()
    s.load.progressed()
    # Nothing failed while the old credentials were valid, nor once new ones were in.
    assert s.load.failures_started_before(first.deadline) == []
    assert s.load.failures_started_after(recovered) == []
    s.finish()


def test_token_file_rewritten_in_time_is_used_before_the_credentials_run_out(
        scenario: MakeScenario, vaultdb_stack: VaultDBStack, caplog):
    s = scenario(default_ttl=30, max_ttl=120, token_ttl=8, token_max_ttl=8)
    expired: list[LeaseExpired] = []
    s.provider.subscribe(expired.append, LeaseExpired)
    first = s.provider.credentials()
    vaultdb_stack.write_service_account_token(s.token_path, ttl=-60)
    wait_for(lambda: logged(caplog, "The JWT from", "expired", level=logging.WARNING),
             timeout=20)
    left = first.seconds_left()
    vaultdb_stack.write_service_account_token(s.token_path)  # the kubelet catches up
    assert left > 1.0, "the login was refused too late for this scenario to say anything"
    wait_for(lambda: (s.provider.generation or 0) > first.generation or expired, timeout=30)
    assert expired == [], "credentials expired although a valid token was there in time"
    s.finish()


def test_slow_vault_does_not_push_expires_at_past_the_deadline(proxy: FaultProxy,
                                                               scenario: MakeScenario):
    proxy.delay(1.5, match=r"/creds/")  # a slow Vault: the credentials read takes 1.5 s
    asked = datetime.now(timezone.utc)
    s = scenario(default_ttl=9, max_ttl=120, vault_addr=proxy.addr, request_timeout=5.0)
    creds = s.provider.credentials()
    proxy.passthrough()
    # Vault starts the lease when it handles the request, so the deadline is at most the TTL
    # after the request was sent (clock resolution aside).
    assert creds.expires_at <= asked + timedelta(seconds=creds.lease_duration + 0.5)
    s.finish()


def _drop_user(stack: VaultDBStack, user: str) -> None:
    db = stack.postgres.database
    stack.sql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{user}'")
    stack.sql(f'REVOKE ALL ON DATABASE "{db}" FROM "{user}"')
    stack.sql(f'DROP ROLE IF EXISTS "{user}"')
