"""PostgreSQL misbehaving while an app queries: restarted, or killing the role's backends.

The credentials stay valid throughout, so vaultdb must not rotate or re-fetch anything; the
pool replaces dead connections with new ones of the same generation.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from faultkit import Scenario, logged

from vaultdb.testing import VaultDBStack, wait_for

MakeScenario = Callable[..., Scenario]


def _new_connections(caplog, user: str) -> int:
    return len(logged(caplog, "connection as user", repr(user)))


def test_postgres_restarted(scenario: MakeScenario, vaultdb_stack: VaultDBStack, caplog):
    s = scenario(default_ttl=9, max_ttl=120)
    creds = s.provider.credentials()
    before = _new_connections(caplog, creds.username)
    down = time.monotonic()
    vaultdb_stack.restart_postgres()
    up = time.monotonic()
    # New connections, same user and generation: the credentials were never in question.
    wait_for(lambda: _new_connections(caplog, creds.username) > before, timeout=20)
    s.load.progressed()
    assert s.provider.generation == creds.generation
    assert s.provider.status().rotations == 0
    assert logged(caplog, f"as user {creds.username!r} (generation {creds.generation})")
    # Only queries caught by the restart itself may fail (the server was down); none that
    # started once it was back, and none for a credentials reason.
    assert s.load.failures_started_after(up) == []
    # A query in flight when the server went down may fail too, so compare when it failed.
    assert all(f.failed >= down for f in s.load.failures)
    assert not [f for f in s.load.failures if "password authentication" in f.error]
    s.finish()


def test_database_terminates_every_backend_of_the_role(scenario: MakeScenario,
                                                       vaultdb_stack: VaultDBStack, caplog):
    s = scenario(default_ttl=9, max_ttl=120)
    creds = s.provider.credentials()
    before = _new_connections(caplog, creds.username)
    killed = vaultdb_stack.sql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
        (creds.username,))
    assert killed, "no backend of the role was running"
    wait_for(lambda: _new_connections(caplog, creds.username) > before, timeout=20)
    s.load.progressed()
    assert s.provider.generation == creds.generation
    assert s.provider.status().rotations == 0
    # A statement whose connection died under it is retried once on a new connection.
    assert s.load.failures == []
    s.finish()
