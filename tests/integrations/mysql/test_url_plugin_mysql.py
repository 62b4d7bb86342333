"""The SQLAlchemy URL plugin on a real MariaDB: same code path as PostgreSQL, sync and async."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from vaultdb.integrations.sqlalchemy_plugin import provider_for

from vaultdb.testing import MySQLTarget, revoked_usernames, wait_for

WHO = "SELECT SUBSTRING_INDEX(USER(), '@', 1)"


@pytest.fixture
def plugin_url(vaultdb_mysql: MySQLTarget, vaultdb_role_name: str,
               mysql_url: Callable[[str], str],
               monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], str]]:
    """``plugin_url("mysql+pymysql")`` for this test's role; the environment the plugin reads."""
    from vaultdb import _registry

    vaultdb_mysql.create_role(vaultdb_role_name, default_ttl=4, max_ttl=6)
    for name, value in {"VAULT_ADDR": vaultdb_mysql.stack.vault_addr,
                        "VAULT_TOKEN": vaultdb_mysql.create_token(),
                        "VAULTDB_HANDLE_SIGTERM": "false", "VAULTDB_DRAIN_SECONDS": "1"}.items():
        monkeypatch.setenv(name, value)
    before = set(_registry._providers)
    yield lambda driver: (f"{mysql_url(driver)}?plugin=vaultdb&vaultdb_role={vaultdb_role_name}"
                          f"&vaultdb_mount={vaultdb_mysql.mount}")
    for key in set(_registry._providers) - before:
        _registry._providers.pop(key).close()


def _who(engine: sqlalchemy.Engine) -> str:
    with engine.connect() as conn:
        return str(conn.execute(text(WHO)).scalar_one())


@pytest.mark.parametrize("driver", ["mysql+pymysql", "mysql+mysqldb"])
def test_sync_plugin_engine_and_its_clone(plugin_url: Callable[[str], str], driver: str) -> None:
    pytest.importorskip("MySQLdb" if driver.endswith("mysqldb") else "pymysql")
    engine = sqlalchemy.create_engine(plugin_url(driver))
    clone = sqlalchemy.create_engine(engine.url)
    try:
        assert engine.url.drivername == driver.replace("+", "+vaultdb_")
        user = _who(engine)
        assert user.startswith("v-") and _who(clone) == user
        assert provider_for(clone) is provider_for(engine)
    finally:
        engine.dispose()
        clone.dispose()


def test_async_plugin_engine(plugin_url: Callable[[str], str]) -> None:
    pytest.importorskip("aiomysql")

    async def main() -> str:
        engine = create_async_engine(plugin_url("mysql+aiomysql"))
        try:
            async with engine.connect() as conn:
                return str((await conn.execute(text(WHO))).scalar_one())
        finally:
            await engine.dispose()

    assert asyncio.run(main()).startswith("v-")


@pytest.mark.slow
def test_plugin_engine_serves_across_rotations(plugin_url: Callable[[str], str]) -> None:
    engine = sqlalchemy.create_engine(plugin_url("mysql+pymysql"), pool_size=2)
    try:
        revoked = revoked_usernames(provider_for(engine))
        users: set[str] = set()

        def two_rotations() -> bool:
            users.add(_who(engine))
            return len(revoked) >= 2

        wait_for(two_rotations, timeout=40)
        assert len(users) >= 3
    finally:
        engine.dispose()
