"""SQLAlchemy on a real MariaDB: queries keep flowing while the credentials rotate.

Mirrors tests/integrations/sqlalchemy/test_sqlalchemy_rotation.py and test_sqlalchemy_async.py
with PyMySQL, mysqlclient and aiomysql. The role's revocation statements drop the old user and
``KILL USER`` its sessions, so a connection kept past its drain window would fail a query:
zero errors is the proof.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest
from sqlalchemy import text
from vaultdb.integrations.sqlalchemy import create_async_engine, create_engine

from vaultdb import CredentialProvider
from vaultdb.testing import MySQLTarget, revoked_usernames, wait_for

ROTATIONS = 3
THREADS = 4
TASKS = 8
WHO = "SELECT SUBSTRING_INDEX(USER(), '@', 1)"


@pytest.mark.slow
@pytest.mark.parametrize("driver", ["mysql+pymysql", "mysql+mysqldb"])
def test_threads_see_no_error_across_rotations(
        vaultdb_mysql: MySQLTarget, vaultdb_role_name: str,
        make_provider: Callable[..., CredentialProvider], mysql_url: Callable[[str], str],
        driver: str) -> None:
    provider = make_provider()
    revoked = revoked_usernames(provider)
    engine = create_engine(mysql_url(driver), provider=provider, pool_size=THREADS,
                           max_overflow=2)
    seen: set[str] = set()
    errors: list[BaseException] = []
    queries = [0] * THREADS
    stop = threading.Event()

    def work(i: int) -> None:
        while not stop.is_set():
            try:
                with engine.connect() as conn:
                    seen.add(conn.execute(text(WHO)).scalar_one())
                    conn.execute(text("SELECT SLEEP(0.002)"))
                queries[i] += 1
            except Exception as exc:
                errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: provider.status().rotations >= ROTATIONS and len(revoked) >= ROTATIONS,
                 timeout=45)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == []
    assert all(n > 0 for n in queries)
    vaultdb_mysql.assert_retired_users_gone(provider, vaultdb_role_name, seen,
                                            at_least=ROTATIONS - 1)
    engine.dispose()
    provider.close()
    assert vaultdb_mysql.users_of_role(vaultdb_role_name) == set()


@pytest.mark.slow
def test_async_tasks_see_no_error_across_rotations(
        vaultdb_mysql: MySQLTarget, vaultdb_role_name: str,
        make_provider: Callable[..., CredentialProvider],
        mysql_url: Callable[[str], str]) -> None:
    provider = make_provider()
    revoked = revoked_usernames(provider)
    seen: set[str] = set()
    errors: list[BaseException] = []

    async def main() -> int:
        engine = create_async_engine(mysql_url("mysql+aiomysql"), provider=provider,
                                     pool_size=TASKS // 2, max_overflow=2)
        stop = asyncio.Event()
        count = 0

        async def work() -> None:
            nonlocal count
            while not stop.is_set():
                try:
                    async with engine.connect() as conn:
                        seen.add((await conn.execute(text(WHO))).scalar_one())
                        await conn.execute(text("SELECT SLEEP(0.002)"))
                    count += 1
                except Exception as exc:
                    errors.append(exc)

        tasks = [asyncio.create_task(work()) for _ in range(TASKS)]
        try:
            while not (provider.status().rotations >= ROTATIONS and len(revoked) >= ROTATIONS):
                await asyncio.sleep(0.05)
                assert not errors
        finally:
            stop.set()
            await asyncio.gather(*tasks)
            await engine.dispose()
        return count

    count = asyncio.run(asyncio.wait_for(main(), timeout=45))
    assert errors == []
    assert count > 0
    vaultdb_mysql.assert_retired_users_gone(provider, vaultdb_role_name, seen,
                                            at_least=ROTATIONS - 1)


@pytest.mark.parametrize("driver", ["mysql+pymysql", "mysql+mysqldb"])
def test_a_lease_revoked_behind_our_back_is_replaced_once(
        vaultdb_mysql: MySQLTarget, make_provider: Callable[..., CredentialProvider],
        mysql_url: Callable[[str], str], driver: str) -> None:
    """The driver's refused login (1045) is recognised: one refresh, then it works."""
    provider = make_provider(default_ttl=60, max_ttl=120)
    engine = create_engine(mysql_url(driver), provider=provider, poolclass=None)
    first = provider.credentials()
    vaultdb_mysql.stack.root_client().sys.revoke_lease(first.lease_id)
    wait_for(lambda: first.username not in vaultdb_mysql.server.users(), timeout=10)
    with engine.connect() as conn:
        user = conn.execute(text(WHO)).scalar_one()
    assert user != first.username
    assert provider.generation == 2
    engine.dispose()
