"""The Django backend against the real stack: logins, sharing, retirement, pool, set_role."""

from __future__ import annotations

import threading

import pytest
from django.db import close_old_connections, connections
from vaultdb.integrations.django import provider_for

from vaultdb import LeaseRevoked, LeaseRotated
from vaultdb.testing import wait_for

#: Creation statements without ``ALTER ROLE ... SET role``: current_user is the dynamic user
#: unless the client sets a role (what VAULT["set_role"] does).
PLAIN_CREATION = [
    "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}' "
    'IN ROLE "app_owner";',
    'GRANT CONNECT ON DATABASE "app" TO "{{name}}";',
]
#: Revocation that does not terminate sessions: an open connection of a revoked user stays
#: visible in pg_stat_activity, so tests can prove vaultdb closed it itself.
GENTLE_REVOCATION = [
    'REVOKE ALL ON DATABASE "app" FROM "{{name}}";',
    'DROP ROLE IF EXISTS "{{name}}";',
]


def users(alias: str) -> tuple[str, str]:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT session_user, current_user")
        row = cursor.fetchone()
    return str(row[0]), str(row[1])


def rotated_event(provider):
    events: list[LeaseRotated] = []
    provider.subscribe(events.append, LeaseRotated)
    return events


def test_connections_log_in_with_the_providers_credentials(make_alias):
    alias = make_alias()
    session_user, current_user = users(alias)
    provider = provider_for(alias)
    assert session_user == provider.credentials().username
    assert session_user.startswith("v-")
    assert current_user == "app_owner"  # the role's ALTER ROLE ... SET role
    assert "password" not in repr(connections[alias].settings_dict.get("VAULT"))


def test_aliases_with_the_same_settings_share_one_provider(make_alias, vaultdb_role_name):
    a = make_alias()
    b = make_alias(role=vaultdb_role_name, vault={"set_role": "app_owner"})
    c = make_alias(role=vaultdb_role_name, vault={"drain_seconds": 2})
    assert provider_for(a) is provider_for(b)  # set_role is per connection, not per provider
    assert provider_for(a) is not provider_for(c)
    assert users(a)[0] == users(b)[0]
    assert users(c)[0] != users(a)[0]


def test_set_role_makes_the_owner_role_current(make_alias):
    plain = make_alias(creation=PLAIN_CREATION)
    owned = make_alias(role=f"{plain.rsplit('-', 1)[0]}", vault={"set_role": "app_owner"})
    assert users(plain)[1] == users(plain)[0]  # no role switch without set_role
    assert users(owned)[1] == "app_owner"


def test_persistent_connection_is_closed_at_the_request_boundary_before_revocation(
        make_alias, vaultdb_stack):
    alias = make_alias(creation=PLAIN_CREATION, revocation=GENTLE_REVOCATION, CONN_MAX_AGE=None,
                       vault={"set_role": "app_owner"})
    provider = provider_for(alias)
    revoked: list[LeaseRevoked] = []
    provider.subscribe(revoked.append, LeaseRevoked)
    rotations = rotated_event(provider)
    old_user = users(alias)[0]
    raw = connections[alias].connection
    wait_for(lambda: rotations, timeout=20)
    # The request loop's boundary (request_started / request_finished call this).
    close_old_connections()
    assert raw.closed
    new_user, current = users(alias)
    assert new_user == rotations[0].credentials.username != old_user
    assert current == "app_owner"
    wait_for(lambda: any(r.credentials.username == old_user for r in revoked), timeout=10)
    # The revocation statements do not kill sessions: none was left to kill, and the role went.
    assert old_user not in vaultdb_stack.session_users()
    assert old_user not in vaultdb_stack.dynamic_db_roles()
    # A connection of the current generation is kept across request boundaries.
    raw = connections[alias].connection
    close_old_connections()
    assert connections[alias].connection is raw


def test_refused_login_gets_fresh_credentials(make_alias, vaultdb_stack):
    alias = make_alias(default_ttl=30, max_ttl=60)
    provider = provider_for(alias)
    first = users(alias)[0]
    connections[alias].close()
    # The lease is revoked behind the provider's back (e.g. an operator, or a Vault restore).
    vaultdb_stack.root_client().sys.revoke_lease(provider.credentials().lease_id)
    wait_for(lambda: first not in vaultdb_stack.dynamic_db_roles(), timeout=10)
    second = users(alias)[0]
    assert second != first
    assert provider.credentials().username == second


@pytest.mark.parametrize("role_option", ["set_role", "assume_role"])
def test_native_pool_gets_fresh_credentials_and_retires_old_connections(
        make_alias, vaultdb_stack, role_option):
    from vaultdb.integrations.django.postgresql.base import POOL_SUPPORTED

    if not POOL_SUPPORTED:
        pytest.skip("Django's pool needs Django 5.1+")
    options = {"pool": {"min_size": 2, "max_size": 4, "timeout": 10}}
    vault: dict[str, str] = {}
    if role_option == "set_role":
        vault["set_role"] = "app_owner"
    else:
        options["assume_role"] = "app_owner"  # Django's own option hangs with its pool
    alias = make_alias(creation=PLAIN_CREATION, revocation=GENTLE_REVOCATION, options=options,
                       vault=vault)
    provider = provider_for(alias)
    rotations = rotated_event(provider)
    result: list[tuple[str, str]] = []
    worker = threading.Thread(target=lambda: result.append(users(alias)), daemon=True)
    worker.start()
    worker.join(15)
    assert result, "connecting through the pool hung"
    old_user, current = result[0]
    assert current == "app_owner"
    assert old_user == provider.credentials().username
    connections[alias].close()  # back to the pool
    wait_for(lambda: rotations, timeout=20)
    new_user = rotations[0].credentials.username
    # Every connection handed out from now on is of the new generation.
    for _ in range(4):
        assert users(alias) == (new_user, "app_owner")
        connections[alias].close()
    # The pool closed the old user's connections before Vault dropped the user.
    wait_for(lambda: old_user not in vaultdb_stack.dynamic_db_roles(), timeout=10)
    assert old_user not in vaultdb_stack.session_users()


#: Users whose password is not the one Vault hands out: every login is refused, as behind a
#: PgBouncer with a static auth file that knows no dynamic user.
REFUSED_CREATION = [
    "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD 'not-the-vault-password' "
    "VALID UNTIL '{{expiration}}' IN ROLE \"app_owner\";",
    'GRANT CONNECT ON DATABASE "app" TO "{{name}}";',
]


def test_refused_logins_refresh_once_then_stop_calling_vault(make_alias):
    from django.db import OperationalError

    alias = make_alias(default_ttl=30, max_ttl=60, creation=REFUSED_CREATION)
    provider = provider_for(alias)
    for _ in range(20):  # 20 requests, each opening a connection
        with pytest.raises(OperationalError):
            connections[alias].ensure_connection()
        connections[alias].close()
    # One lease, one refresh after the first refusal; the refreshed user refused too, so the
    # credentials are not the problem and Vault is not asked again.
    assert provider.generation == 2


@pytest.mark.parametrize("pool", [False, True])
def test_nodb_connection_logs_in_with_and_without_the_pool(make_alias, pool):
    """``manage.py test`` creates databases through a no-database connection built without
    Django's pool: it must log in itself even when the alias is pooled."""
    from vaultdb.integrations.django.postgresql.base import POOL_SUPPORTED

    if pool and not POOL_SUPPORTED:
        pytest.skip("Django's pool needs Django 5.1+")
    alias = make_alias(options={"pool": {"min_size": 1, "max_size": 2, "timeout": 10}}
                       if pool else {})
    with connections[alias]._nodb_cursor() as cursor:
        cursor.execute("SELECT session_user, current_database()")
        user, database = cursor.fetchone()
    assert user == provider_for(alias).credentials().username
    assert database == "postgres"
