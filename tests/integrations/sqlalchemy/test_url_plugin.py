"""A URL alone: ``?plugin=vaultdb`` and the ``<backend>+vaultdb_<driver>`` dialects, real stack."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import sqlalchemy
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from vaultdb.integrations.sqlalchemy_plugin import provider_for

from vaultdb.errors import ConfigurationError
from vaultdb.testing import VaultDBStack, revoked_usernames, wait_for

SYNC_DRIVERS = ["postgresql+psycopg", "postgresql+psycopg2", "postgresql"]
ASYNC_DRIVERS = ["postgresql+asyncpg", "postgresql+psycopg"]


def _session_user(engine: sqlalchemy.Engine) -> str:
    with engine.connect() as conn:
        return str(conn.execute(text("SELECT session_user")).scalar_one())


@pytest.mark.parametrize("driver", SYNC_DRIVERS)
def test_sync_engine_from_a_plugin_url(plugin_role: str, pg_url: Callable[[str], str],
                                       driver: str) -> None:
    engine = sqlalchemy.create_engine(f"{pg_url(driver)}?plugin=vaultdb&vaultdb_role={plugin_role}")
    try:
        assert _session_user(engine).startswith("v-")
        # The URL the engine keeps names vaultdb, so a copy built from it still logs in.
        assert "+vaultdb_" in engine.url.drivername and "plugin" not in engine.url.query
        assert engine.dialect.driver == sqlalchemy.make_url(pg_url(driver)).get_dialect().driver
        clone = sqlalchemy.create_engine(engine.url)
        try:
            assert _session_user(clone).startswith("v-")
            assert provider_for(clone) is provider_for(engine)
        finally:
            clone.dispose()
    finally:
        engine.dispose()


@pytest.mark.parametrize("driver", ASYNC_DRIVERS)
def test_async_engine_from_a_plugin_url(plugin_role: str, pg_url: Callable[[str], str],
                                        driver: str) -> None:
    async def main() -> tuple[str, str]:
        engine = create_async_engine(
            f"{pg_url(driver)}?plugin=vaultdb&vaultdb_role={plugin_role}")
        clone = create_async_engine(engine.url)
        try:
            async with engine.connect() as conn:
                user = (await conn.execute(text("SELECT session_user"))).scalar_one()
            async with clone.connect() as conn:
                again = (await conn.execute(text("SELECT session_user"))).scalar_one()
            return user, again
        finally:
            await engine.dispose()
            await clone.dispose()

    user, again = asyncio.run(main())
    assert user.startswith("v-") and user == again  # one shared provider


def test_the_dialect_name_alone_works_and_engines_share_one_provider(
        plugin_role: str, pg_url: Callable[[str], str]) -> None:
    url = f"{pg_url('postgresql+vaultdb_psycopg')}?vaultdb_role={plugin_role}"
    first, second = sqlalchemy.create_engine(url), sqlalchemy.create_engine(url)
    try:
        assert provider_for(first) is provider_for(second)
        assert _session_user(first) == _session_user(second)
        first.dispose()  # disposing one engine leaves the other working
        assert _session_user(second).startswith("v-")
        assert _session_user(first).startswith("v-")  # and the disposed one reconnects
    finally:
        first.dispose()
        second.dispose()


def test_settings_from_the_url_win_over_the_environment(
        plugin_role: str, pg_url: Callable[[str], str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAULTDB_ROLE", "no-such-role")
    engine = sqlalchemy.create_engine(
        f"{pg_url('postgresql+psycopg')}?plugin=vaultdb&vaultdb_role={plugin_role}"
        "&vaultdb_set_role=app_owner&application_name=recipe")
    try:
        with engine.connect() as conn:
            row = conn.execute(text("SELECT current_user, current_setting('application_name')"))
            assert tuple(row.one()) == ("app_owner", "recipe")  # other parameters reach libpq
        assert provider_for(engine).role == plugin_role
    finally:
        engine.dispose()


def test_the_password_is_never_in_the_url_its_repr_or_an_error(
        plugin_role: str, pg_url: Callable[[str], str]) -> None:
    engine = sqlalchemy.create_engine(
        f"{pg_url('postgresql+psycopg')}?plugin=vaultdb&vaultdb_role={plugin_role}")
    try:
        _session_user(engine)
        password = provider_for(engine).credentials().password
        shown = [str(engine.url), repr(engine.url), repr(engine),
                 engine.url.render_as_string(hide_password=False)]
        bad = sqlalchemy.create_engine(engine.url.set(database="no_such_database"))
        with pytest.raises(sqlalchemy.exc.OperationalError) as caught:
            _session_user(bad)
        bad.dispose()
        shown += [str(caught.value), repr(caught.value), str(caught.value.orig)]
        assert all(password not in text_ for text_ in shown)
    finally:
        engine.dispose()


@pytest.mark.parametrize(("query", "named"), [
    ("vaultdb_request_timeout=abc", "URL parameter vaultdb_request_timeout"),
    ("vaultdb_request_timeout=0", "URL parameter vaultdb_request_timeout"),
    ("vaultdb_rol=x", "Unknown URL parameter vaultdb_rol"),
    ("vaultdb_token=s3cr3t", "would put a secret in the URL"),
    ("", "VAULTDB_ROLE"),
])
def test_bad_settings_name_the_parameter_to_fix(
        plugin_role: str, pg_url: Callable[[str], str], query: str, named: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        sqlalchemy.create_engine(f"{pg_url('postgresql+psycopg')}?plugin=vaultdb&{query}")
    assert named in str(caught.value) + str(caught.value.hint)
    assert "s3cr3t" not in str(caught.value) + str(caught.value.hint)


@pytest.mark.slow
def test_a_plugin_engine_serves_across_rotations(
        vaultdb_stack: VaultDBStack, plugin_role: str, pg_url: Callable[[str], str]) -> None:
    engine = sqlalchemy.create_engine(
        f"{pg_url('postgresql+psycopg')}?plugin=vaultdb&vaultdb_role={plugin_role}",
        pool_size=2)
    provider = provider_for(engine)
    revoked = revoked_usernames(provider)
    users: set[str] = set()
    try:
        def served_two_rotations() -> bool:
            users.add(_session_user(engine))
            return len(revoked) >= 2

        wait_for(served_two_rotations, timeout=40)
        assert len(users) >= 3
        assert not set(vaultdb_stack.session_users()) & revoked
    finally:
        engine.dispose()


@pytest.mark.parametrize(("url", "driver"), [
    ("mysql+pymysql://db.invalid:3306/app", "pymysql"),
    ("mariadb+pymysql://db.invalid:3306/app", "pymysql"),
])
def test_mysql_urls_take_the_same_path(url: str, driver: str,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """No server needed: the dialect hand-over and the connect arguments (MySQL logins are
    exercised with a real server by the MySQL integration's own tests)."""
    monkeypatch.setenv("VAULT_ADDR", "http://127.0.0.1:1")
    monkeypatch.setenv("VAULT_TOKEN", "unused")
    monkeypatch.setenv("VAULTDB_HANDLE_SIGTERM", "false")
    engine = sqlalchemy.create_engine(f"{url}?plugin=vaultdb&vaultdb_role=app-rw&charset=utf8mb4")
    try:
        assert engine.url.drivername.endswith(f"+vaultdb_{driver}")
        assert engine.dialect.driver == driver
        _, cparams = engine.dialect.create_connect_args(engine.url)
        assert cparams.get("charset") == "utf8mb4"
        assert not any(key.startswith("vaultdb_") for key in cparams)
        assert provider_for(engine).role == "app-rw"
    finally:
        engine.dispose()
        provider_for(engine).close()


def test_after_fork_the_child_logs_in_as_its_own_user(
        plugin_role: str, pg_url: Callable[[str], str]) -> None:
    import os

    engine = sqlalchemy.create_engine(
        f"{pg_url('postgresql+psycopg')}?plugin=vaultdb&vaultdb_role={plugin_role}")
    try:
        parent_user = _session_user(engine)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: SQLAlchemy's documented recipe, then a new engine from the URL
            code = 1
            try:
                engine.dispose(close=False)
                users = {_session_user(engine),
                         _session_user(sqlalchemy.create_engine(engine.url))}
                os.write(write, ",".join(sorted(users)).encode())
                provider_for(engine).close()
                code = 0
            finally:
                os._exit(code)
        os.close(write)
        with os.fdopen(read) as pipe:
            child_users = pipe.read().split(",")
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert len(child_users) == 1 and child_users[0] != parent_user  # one lease per process
        assert _session_user(engine) == parent_user  # the parent's lease is untouched
    finally:
        engine.dispose()


def test_a_do_connect_listener_added_later_still_runs(
        plugin_role: str, pg_url: Callable[[str], str]) -> None:
    """Found with SQLAlchemy's own suite (DialectEventTest): vaultdb's listener returned the
    connection itself, so listeners added after it never ran."""
    engine = sqlalchemy.create_engine(
        f"{pg_url('postgresql+psycopg')}?plugin=vaultdb&vaultdb_role={plugin_role}")
    seen: list[dict[str, object]] = []

    @sqlalchemy.event.listens_for(engine, "do_connect")
    def mine(dialect: object, rec: object, cargs: object, cparams: dict[str, object]) -> None:
        seen.append(dict(cparams))
        cparams["application_name"] = "added-later"

    try:
        with engine.connect() as conn:
            row = conn.execute(text("SELECT session_user, current_setting('application_name')"))
            user, app = row.one()
        assert user.startswith("v-") and app == "added-later"
        assert seen and seen[0]["user"] == user  # the credentials were handed on
    finally:
        engine.dispose()


def test_the_pool_creator_called_outside_the_pool(
        plugin_role: str, pg_url: Callable[[str], str]) -> None:
    """Found with SQLAlchemy's own suite (CreatorCompatibilityTest): no pool entry (None)."""
    engine = sqlalchemy.create_engine(
        f"{pg_url('postgresql+psycopg')}?plugin=vaultdb&vaultdb_role={plugin_role}")
    try:
        conn = engine.pool._creator()  # type: ignore[call-arg]
        conn.close()
    finally:
        engine.dispose()


def test_the_dialect_keeps_the_real_module() -> None:
    """Found with SQLAlchemy's own suite: ``load_provisioning()`` finds a dialect's companions
    from its ``__module__``; the wrapped class must keep the real one (no server needed)."""
    real = sqlalchemy.make_url("postgresql+psycopg://h/db").get_dialect()
    mine = sqlalchemy.make_url("postgresql+vaultdb_psycopg://h/db?vaultdb_role=r").get_dialect()
    assert mine is not real and issubclass(mine, real)
    assert (mine.__module__, mine.__name__) == (real.__module__, real.__name__)
    assert (mine.name, mine.driver) == (real.name, real.driver)


def test_a_plugin_url_and_a_provider_together_say_which_to_drop(
        plugin_role: str, pg_url: Callable[[str], str], vaultdb_stack: VaultDBStack) -> None:
    from vaultdb.integrations.sqlalchemy import create_engine

    from vaultdb import CredentialProvider, TokenAuth

    provider = CredentialProvider(plugin_role, auth=TokenAuth(token=vaultdb_stack.create_token()),
                                  vault_addr=vaultdb_stack.vault_addr, handle_sigterm=False)
    try:
        with pytest.raises(ValueError, match="use one or the other"):
            create_engine(f"{pg_url('postgresql+psycopg')}?plugin=vaultdb"
                          f"&vaultdb_role={plugin_role}", provider=provider)
    finally:
        provider.close()
