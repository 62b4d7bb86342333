"""The SQLAlchemy hooks one at a time: idle sweep, checkin, auth-failure retry, SET ROLE, MySQL
connect arguments, and that no password ever reaches a log line."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pymysql
import pytest
import sqlalchemy
from sqlalchemy import text
from sqlalchemy.pool import NullPool
from vaultdb.integrations.sqlalchemy import attach, create_async_engine, create_engine, detach

from vaultdb import CredentialProvider, LeaseCreated
from vaultdb.testing import VaultDBStack, wait_for


def keep_sessions(stack: VaultDBStack) -> dict[str, Any]:
    """Role options whose revocation drops the user but leaves its sessions running, as many
    real revocation statements do: connections left open would linger, so only the
    integration's own sweep can close them."""
    db = stack.postgres.database
    return {"revocation_statements": [f'REVOKE ALL ON DATABASE "{db}" FROM "{{{{name}}}}";',
                                      'DROP ROLE IF EXISTS "{{name}}";']}


def sessions_of(stack: VaultDBStack, user: str) -> int:
    return stack.session_users().get(user, 0)


def test_idle_connections_are_swept_and_held_ones_left_alone(
        vaultdb_stack: VaultDBStack, make_provider: Callable[..., CredentialProvider],
        pg_url: Callable[[str], str]) -> None:
    provider = make_provider(role_kwargs=keep_sessions(vaultdb_stack))
    # LIFO: the sweep must not be handed the same connection twice.
    engine = create_engine(pg_url("postgresql+psycopg"), provider=provider, pool_size=5,
                           pool_use_lifo=True)
    conns = [engine.connect() for _ in range(5)]
    old = conns[0].execute(text("SELECT session_user")).scalar_one()
    generation = provider.generation
    held = conns.pop()
    for conn in conns:
        conn.close()
    assert sessions_of(vaultdb_stack, old) == 5

    wait_for(lambda: (provider.generation or 0) > (generation or 0), timeout=15)
    # The four idle ones are closed by the sweep; the one a caller holds is not touched.
    wait_for(lambda: sessions_of(vaultdb_stack, old) == 1, timeout=10)
    assert held.execute(text("SELECT session_user")).scalar_one() == old
    held.close()  # given back: closed at checkin
    wait_for(lambda: sessions_of(vaultdb_stack, old) == 0, timeout=10)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT session_user")).scalar_one() != old
    engine.dispose()


def test_async_idle_connections_are_swept(
        vaultdb_stack: VaultDBStack, make_provider: Callable[..., CredentialProvider],
        pg_url: Callable[[str], str]) -> None:
    provider = make_provider(role_kwargs=keep_sessions(vaultdb_stack))

    async def main() -> None:
        engine = create_async_engine(pg_url("postgresql+asyncpg"), provider=provider,
                                     pool_size=4)
        conns = [await engine.connect() for _ in range(4)]
        old = (await conns[0].execute(text("SELECT session_user"))).scalar_one()
        generation = provider.generation
        for conn in conns:
            await conn.close()
        assert sessions_of(vaultdb_stack, old) == 4
        while provider.generation == generation:
            await asyncio.sleep(0.05)
        while sessions_of(vaultdb_stack, old):  # the sweep runs on this loop
            await asyncio.sleep(0.05)
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT session_user"))).scalar_one() != old
        await engine.dispose()

    asyncio.run(asyncio.wait_for(main(), timeout=30))


def revoke_now(stack: VaultDBStack, lease_id: str, user: str) -> None:
    """Revoke a lease behind the provider's back (as a Vault restart or an operator would)."""
    stack.root_client().write_data("sys/leases/revoke", data={"lease_id": lease_id,
                                                              "sync": True})
    wait_for(lambda: user not in stack.dynamic_db_roles(), timeout=10)


@pytest.mark.parametrize("driver", ["postgresql+psycopg", "postgresql+asyncpg"])
def test_revoked_credentials_are_refreshed_once_at_connect(
        vaultdb_stack: VaultDBStack, make_provider: Callable[..., CredentialProvider],
        pg_url: Callable[[str], str], driver: str, caplog: pytest.LogCaptureFixture) -> None:
    provider = make_provider(default_ttl=60, max_ttl=120)  # the renewer stays out of the way
    before = provider.credentials()
    revoke_now(vaultdb_stack, str(before.lease_id), before.username)

    async def query_async() -> str:
        engine = create_async_engine(pg_url(driver), provider=provider, poolclass=NullPool)
        async with engine.connect() as conn:
            user = (await conn.execute(text("SELECT session_user"))).scalar_one()
        await engine.dispose()
        return str(user)

    with caplog.at_level(logging.WARNING, "vaultdb.integrations"):
        if driver.endswith("asyncpg"):
            user = asyncio.run(query_async())
        else:
            engine = create_engine(pg_url(driver), provider=provider, poolclass=NullPool)
            with engine.connect() as conn:
                user = conn.execute(text("SELECT session_user")).scalar_one()
    assert user != before.username
    assert provider.generation == before.generation + 1
    assert "retrying once" in caplog.text


def test_login_refused_for_another_reason_does_not_fetch_leases_in_a_loop(
        vaultdb_stack: VaultDBStack, make_provider: Callable[..., CredentialProvider],
        pg_url: Callable[[str], str]) -> None:
    db = vaultdb_stack.postgres.database
    provider = make_provider(default_ttl=60, max_ttl=120, role_kwargs={"creation_statements": [
        "CREATE ROLE \"{{name}}\" WITH NOLOGIN PASSWORD '{{password}}' "
        "VALID UNTIL '{{expiration}}';",
        f'GRANT CONNECT ON DATABASE "{db}" TO "{{{{name}}}}";']})
    engine = create_engine(pg_url("postgresql+psycopg"), provider=provider, poolclass=NullPool)
    for _ in range(3):
        with pytest.raises(sqlalchemy.exc.OperationalError, match="not permitted to log in"):
            engine.connect()
    # One refresh after the first refusal; the refreshed credentials were refused too, so
    # the later attempts do not ask Vault again.
    assert provider.status().rotations == 1


def test_set_role_makes_objects_owned_by_the_stable_role(
        vaultdb_stack: VaultDBStack, vaultdb_role_name: str,
        make_provider: Callable[..., CredentialProvider], pg_url: Callable[[str], str]) -> None:
    pg = vaultdb_stack.postgres
    # No server-side "ALTER ROLE ... SET role": the client has to do it.
    provider = make_provider(default_ttl=60, max_ttl=120, role_kwargs={"creation_statements": [
        "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' "
        f"VALID UNTIL '{{{{expiration}}}}' IN ROLE \"{pg.owner_role}\";",
        f'GRANT CONNECT ON DATABASE "{pg.database}" TO "{{{{name}}}}";']})
    engine = create_engine(pg_url("postgresql+psycopg"), provider=provider,
                           set_role=pg.owner_role)
    table = f"t_{vaultdb_role_name[1:9]}"
    with engine.begin() as conn:
        assert conn.execute(text("SELECT current_user")).scalar_one() == pg.owner_role
        conn.execute(text(f"CREATE TABLE {table} (id int)"))
    user = provider.credentials().username
    engine.dispose()
    provider.close()  # revocation drops the user: possible because it owns nothing
    assert user not in vaultdb_stack.dynamic_db_roles()
    owner = vaultdb_stack.sql("SELECT tableowner FROM pg_tables WHERE tablename = %s", [table])
    assert owner == [(pg.owner_role,)]


def test_mysql_url_gets_user_and_password_connect_arguments(
        make_provider: Callable[..., CredentialProvider]) -> None:
    """No MySQL server here: the DBAPI connect is replaced to record its arguments, and the
    first call answers like a server refusing revoked credentials (error 1045)."""
    provider = make_provider(default_ttl=60, max_ttl=120)
    engine = create_engine("mysql+pymysql://db.invalid:3306/app", provider=provider)
    calls: list[dict[str, Any]] = []

    class Stop(Exception):
        pass

    def fake_connect(*cargs: Any, **cparams: Any) -> Any:
        calls.append(cparams)
        if len(calls) == 1:
            raise pymysql.err.OperationalError(1045, "Access denied for user (using password: YES)")
        raise Stop

    engine.dialect.connect = fake_connect  # type: ignore[method-assign]
    first = provider.credentials()
    with pytest.raises(Stop):
        engine.connect()
    second = provider.credentials()
    assert calls[0]["host"] == "db.invalid" and calls[0]["database"] == "app"
    assert (calls[0]["user"], calls[0]["password"]) == (first.username, first.password)
    assert (calls[1]["user"], calls[1]["password"]) == (second.username, second.password)
    assert second.generation == first.generation + 1


def test_no_password_in_logs_reprs_or_errors(
        vaultdb_stack: VaultDBStack, make_provider: Callable[..., CredentialProvider],
        pg_url: Callable[[str], str], caplog: pytest.LogCaptureFixture) -> None:
    provider = make_provider()
    passwords: list[str] = []
    provider.subscribe(lambda e: passwords.append(e.credentials.password), LeaseCreated)
    caplog.set_level(logging.DEBUG)
    engine = create_engine(pg_url("postgresql+psycopg"), provider=provider, pool_size=2,
                           echo_pool="debug")
    generation = provider.credentials().generation
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    wait_for(lambda: provider.generation != generation, timeout=15)
    with engine.connect() as conn:  # old connection replaced at checkout
        conn.execute(text("SELECT 1"))
    creds = provider.credentials()
    revoke_now(vaultdb_stack, str(creds.lease_id), creds.username)
    bad = create_engine(pg_url("postgresql+psycopg"), provider=provider, poolclass=NullPool)
    with bad.connect():  # refused, refreshed, retried
        pass
    failing = sqlalchemy.create_engine(pg_url("postgresql+psycopg"), poolclass=NullPool,
                                       connect_args={"password": creds.password,
                                                     "user": creds.username})
    with pytest.raises(sqlalchemy.exc.OperationalError) as refused:
        failing.connect()
    assert len(passwords) >= 3
    assert "new postgresql+psycopg connection as user" in caplog.text
    texts = [caplog.text, repr(engine), str(engine.url), repr(provider), str(refused.value)]
    for password in passwords:
        for t in texts:
            assert password not in t


def test_attach_is_explicit_and_reversible(
        make_provider: Callable[..., CredentialProvider], pg_url: Callable[[str], str]) -> None:
    provider = make_provider(default_ttl=60, max_ttl=120)
    engine = sqlalchemy.create_engine(pg_url("postgresql+psycopg"))
    assert attach(engine, provider) is engine
    with pytest.raises(ValueError, match="already attached"):
        attach(engine, provider)
    with pytest.raises(TypeError, match="creator"):
        create_engine(pg_url("postgresql+psycopg"), provider=provider, creator=lambda: None)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar_one() == 1
    detach(engine)
    engine.dispose()
    with pytest.raises(sqlalchemy.exc.OperationalError):  # no credentials any more
        engine.connect()
    attach(engine, provider)  # attachable again after detach
    with engine.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar_one() == 1
    engine.dispose()
