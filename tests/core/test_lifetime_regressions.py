"""Real-stack regressions for the two lifetime bugs the simulation was built to catch.

Both came from a held lease keeping a copy of its login token: once the token was renewed, the
copy's expiry passed and the lease looked "ended with its token", so it was never revoked.
The simulation (tests/sim) covers hours; these show the same on OpenBao in seconds, with a
login token whose TTL is shorter than the lease's.
"""

from __future__ import annotations

import threading

from vaultdb import LeaseRevoked, LoginRenewed, TokenAuth
from vaultdb.testing import VaultDBStack, database_users_of_role, wait_for


def test_handed_in_token_renewed_then_close_revokes_the_lease(
        vaultdb_provider_factory, vaultdb_stack: VaultDBStack, vaultdb_role_name: str) -> None:
    """TokenAuth (VAULT_TOKEN, an agent sink): close() after a token renewal still revokes."""
    token = vaultdb_stack.create_token(ttl=3)
    provider = vaultdb_provider_factory(default_ttl=60, max_ttl=120,
                                        auth=TokenAuth(token=token))
    renewed = threading.Event()
    provider.subscribe(lambda _e: renewed.set(), LoginRenewed)
    creds = provider.credentials()
    # The token is renewed at about 2/3 of its 3 s TTL; the first copy's expiry then passes.
    wait_for(renewed.is_set, timeout=20)
    wait_for(lambda: provider.status().token_seconds_left is not None, timeout=5)
    assert creds.username in database_users_of_role(vaultdb_stack, vaultdb_role_name)
    # Past the first token copy's expiry (3 s after login): wait for a second renewal.
    seen: list[LoginRenewed] = []
    provider.subscribe(seen.append, LoginRenewed)
    wait_for(lambda: seen, timeout=20)
    provider.close()
    assert provider.status().revocations == 1
    assert creds.username not in database_users_of_role(vaultdb_stack, vaultdb_role_name)


def test_rotated_out_lease_is_revoked_when_its_drain_ends_after_a_token_renewal(
        vaultdb_provider_factory, vaultdb_stack: VaultDBStack, vaultdb_role_name: str) -> None:
    """Kubernetes login with a 3 s token renewed every ~2 s; leases rotate every ~4.5 s."""
    provider = vaultdb_provider_factory(default_ttl=4, max_ttl=6, drain_seconds=1,
                                        login="kubernetes", token_ttl=3, token_max_ttl=120)
    revoked: list[LeaseRevoked] = []
    renewals = threading.Event()
    provider.subscribe(revoked.append, LeaseRevoked)
    provider.subscribe(lambda _e: renewals.set(), LoginRenewed)
    first = provider.credentials()
    wait_for(renewals.is_set, timeout=20)
    # The first lease rotates out about 4.5 s in and drains for 1 s: it must be revoked then,
    # with the provider still running, not left to its TTL.
    wait_for(lambda: any(e.credentials.generation == first.generation for e in revoked),
             timeout=20)
    assert first.username not in database_users_of_role(vaultdb_stack, vaultdb_role_name)
    assert provider.status().logins == 1  # renewed, never logged in again


def test_rotate_after_rotates_renewable_credentials_at_their_maximum_age(
        vaultdb_provider_factory, vaultdb_stack: VaultDBStack, vaultdb_role_name: str) -> None:
    """rotate_after: a 60 s lease Vault would renew for two minutes rotates every 2 s."""
    from vaultdb import LeaseRotated

    provider = vaultdb_provider_factory(default_ttl=60, max_ttl=120, drain_seconds=0.5,
                                        rotate_after=2)
    rotations: list[LeaseRotated] = []
    provider.subscribe(rotations.append, LeaseRotated)
    first = provider.credentials()
    wait_for(lambda: len(rotations) >= 2, timeout=20)
    assert {r.reason for r in rotations} == {"maximum credential age reached"}
    assert rotations[0].previous.generation == first.generation
    wait_for(lambda: first.username not in database_users_of_role(vaultdb_stack,
                                                                  vaultdb_role_name), timeout=10)
    assert provider.status().renewals == 0
