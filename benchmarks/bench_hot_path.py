"""Hot-path cost of the SQLAlchemy, psycopg-pool and asyncpg integrations, against plain ones.

Run: ``python benchmarks/bench_hot_path.py [--quick]``. Starts the real test stack (OpenBao +
PostgreSQL on 127.0.0.1), then measures, in the same run and on the same server:

* checkout: ``with engine.connect(): pass`` on a warm QueuePool (what every request pays),
  the raw ``engine.pool.connect()`` underneath it, and ``pool.connection()`` of psycopg-pool;
* new connection: ``with engine.connect(): pass`` on a NullPool engine (a full PostgreSQL
  login with SCRAM each time, which is what ``do_connect`` adds its work to);
* the same two for an engine made from a URL alone (``?plugin=vaultdb``), measured against
  ``create_engine(url, provider=...)`` (the "plain" column of those rows);
* asyncpg: ``pool.acquire()``/release on a warm pool and a new connection
  (``connect()``/``close()``), vaultdb's against asyncpg's own with a static password.

The plain side logs in as a static user with a static password; the vaultdb side uses a
provider with a long lease (no rotation during the run). Rounds alternate between the two
and the median round is reported, so drift on a busy machine hits both alike. This is a
benchmark, not a test: it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import time
from collections.abc import Callable

import asyncpg
import psycopg_pool
import sqlalchemy
from sqlalchemy.pool import NullPool
from vaultdb.integrations import asyncpg as vasyncpg
from vaultdb.integrations import psycopg as vpsycopg
from vaultdb.integrations.sqlalchemy import create_engine
from vaultdb.integrations.sqlalchemy_plugin import provider_for

from vaultdb import CredentialProvider, TokenAuth
from vaultdb.testing import VaultDBStack


def per_op(fn: Callable[[], object], n: int) -> float:
    """Seconds per call of ``fn``, over ``n`` calls."""
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def compare(name: str, plain: Callable[[], object], vault: Callable[[], object], *, n: int,
            rounds: int) -> tuple[str, float, float, float]:
    for fn in (plain, vault):  # warm up
        per_op(fn, max(1, n // 10))
    a: list[float] = []
    b: list[float] = []
    for i in range(rounds):
        pair = [(plain, a), (vault, b)] if i % 2 == 0 else [(vault, b), (plain, a)]
        for fn, out in pair:
            out.append(per_op(fn, n))
    pa, pb = statistics.median(a), statistics.median(b)
    return name, pa, pb, pb / pa


def compare_async(name: str, plain: Callable[[], object], vault: Callable[[], object], *,
                  n: int, rounds: int, loop: asyncio.AbstractEventLoop
                  ) -> tuple[str, float, float, float]:
    """:func:`compare` for coroutine functions: ``n`` awaits per timing, on one loop."""

    async def timed(fn: Callable[[], object], count: int) -> float:
        start = time.perf_counter()
        for _ in range(count):
            await fn()  # type: ignore[misc]
        return (time.perf_counter() - start) / count

    for fn in (plain, vault):
        loop.run_until_complete(timed(fn, max(1, n // 10)))
    a: list[float] = []
    b: list[float] = []
    for i in range(rounds):
        pair = [(plain, a), (vault, b)] if i % 2 == 0 else [(vault, b), (plain, a)]
        for fn, out in pair:
            out.append(loop.run_until_complete(timed(fn, n)))
    pa, pb = statistics.median(a), statistics.median(b)
    return name, pa, pb, pb / pa


def asyncpg_rows(stack: VaultDBStack, provider: CredentialProvider, password: str, *,
                 checkouts: int, connects: int, rounds: int) -> list[tuple[str, float, float,
                                                                          float]]:
    pg = stack.postgres
    dsn = f"postgresql://{pg.host}:{pg.port}/{pg.database}"
    static = {"user": "bench_static", "password": password}
    loop = asyncio.new_event_loop()
    try:
        async def pools() -> tuple[asyncpg.Pool, asyncpg.Pool]:
            return (await asyncpg.create_pool(dsn, min_size=2, max_size=2, **static),
                    await vasyncpg.create_pool(dsn, provider=provider, min_size=2, max_size=2))

        plain_pool, vault_pool = loop.run_until_complete(pools())

        def acquire(pool: asyncpg.Pool) -> Callable[[], object]:
            async def run() -> None:
                async with pool.acquire():
                    pass
            return run

        async def plain_connect() -> None:
            await (await asyncpg.connect(dsn, **static)).close()

        async def vault_connect() -> None:
            await (await vasyncpg.connect(dsn, provider=provider)).close()

        rows = [
            compare_async("asyncpg pool acquire/release", acquire(plain_pool),
                          acquire(vault_pool), n=checkouts, rounds=rounds, loop=loop),
            compare_async("asyncpg new connection", plain_connect, vault_connect, n=connects,
                          rounds=rounds, loop=loop),
        ]
        for pool in (plain_pool, vault_pool):
            loop.run_until_complete(pool.close())
        return rows
    finally:
        loop.close()


def connect_close(engine: sqlalchemy.Engine) -> Callable[[], None]:
    def run() -> None:
        with engine.connect():
            pass
    return run


def pool_checkout(engine: sqlalchemy.Engine) -> Callable[[], None]:
    pool = engine.pool
    return lambda: pool.connect().close()


def psycopg_checkout(pool: psycopg_pool.ConnectionPool) -> Callable[[], None]:  # type: ignore[type-arg]
    def run() -> None:
        with pool.connection():
            pass
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    args = parser.parse_args()
    checkouts, connects, rounds = (2000, 30, 5) if args.quick else (20000, 150, 9)

    with VaultDBStack.start() as stack:
        pg = stack.postgres
        password = secrets.token_urlsafe(16)
        # Same role set-up as the dynamic users (owner role membership, SET role at login),
        # so the server does the same work for both logins and only the client side differs.
        stack.sql(f"CREATE ROLE bench_static LOGIN PASSWORD '{password}' IN ROLE "
                  f'"{pg.owner_role}"')
        stack.sql(f"ALTER ROLE bench_static SET role = '{pg.owner_role}'")
        stack.sql(f'GRANT CONNECT ON DATABASE "{pg.database}" TO bench_static')
        stack.create_database_role("bench", default_ttl=600, max_ttl=3600)
        provider = CredentialProvider("bench", vault_addr=stack.vault_addr,
                                      auth=TokenAuth(token=stack.create_token(ttl=3600)),
                                      handle_sigterm=False)
        where = f"{pg.host}:{pg.port}/{pg.database}"
        plain_url = f"postgresql+psycopg://bench_static:{password}@{where}"
        url = f"postgresql+psycopg://{where}"
        conninfo = f"host={pg.host} port={pg.port} dbname={pg.database}"

        plain = sqlalchemy.create_engine(plain_url, pool_size=5)
        vault = create_engine(url, provider=provider, pool_size=5)
        plain_new = sqlalchemy.create_engine(plain_url, poolclass=NullPool)
        vault_new = create_engine(url, provider=provider, poolclass=NullPool)
        plain_pool = psycopg_pool.ConnectionPool(
            conninfo, kwargs={"user": "bench_static", "password": password}, min_size=2,
            open=True)
        vault_pool = vpsycopg.ConnectionPool(conninfo, provider=provider, min_size=2, open=True)
        plain_pool.wait()
        vault_pool.wait()
        # The URL plugin reads the login from the environment, as an app's deployment sets it.
        os.environ.update({"VAULT_ADDR": stack.vault_addr, "VAULTDB_HANDLE_SIGTERM": "false",
                           "VAULT_TOKEN": stack.create_token(ttl=3600)})
        plugin_url = f"{url}?plugin=vaultdb&vaultdb_role=bench"
        plugin = sqlalchemy.create_engine(plugin_url, pool_size=5)
        plugin_new = sqlalchemy.create_engine(plugin_url, poolclass=NullPool)

        results = [
            compare("SQLAlchemy checkout (engine.connect)", connect_close(plain),
                    connect_close(vault), n=checkouts, rounds=rounds),
            compare("SQLAlchemy checkout (pool.connect)", pool_checkout(plain),
                    pool_checkout(vault), n=checkouts, rounds=rounds),
            compare("psycopg-pool checkout (connection)", psycopg_checkout(plain_pool),
                    psycopg_checkout(vault_pool), n=checkouts // 4, rounds=rounds),
            compare("URL plugin / provider= checkout", connect_close(vault),
                    connect_close(plugin), n=checkouts, rounds=rounds),
            compare("SQLAlchemy new connection (NullPool)", connect_close(plain_new),
                    connect_close(vault_new), n=connects, rounds=rounds),
            compare("URL plugin / provider= new connection", connect_close(vault_new),
                    connect_close(plugin_new), n=connects, rounds=rounds),
            *asyncpg_rows(stack, provider, password, checkouts=checkouts // 4,
                          connects=connects, rounds=rounds),
        ]
        for pool in (plain_pool, vault_pool):
            pool.close()
        for engine in (plain, vault, plain_new, vault_new, plugin, plugin_new):
            engine.dispose()
        provider_for(plugin).close()
        provider.close()

    print(f"{'operation':40} {'plain':>11} {'vaultdb':>11} {'ratio':>7}")
    for name, pa, pb, ratio in results:
        print(f"{name:40} {pa * 1e6:9.1f}us {pb * 1e6:9.1f}us {ratio:7.3f}")


if __name__ == "__main__":
    main()
