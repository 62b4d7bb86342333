"""psycopg-pool's AsyncConnectionPool keeps serving concurrent tasks while credentials rotate."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from vaultdb.integrations.psycopg import AsyncConnectionPool

from vaultdb import CredentialProvider
from vaultdb.testing import VaultDBStack, assert_retired_users_gone, revoked_usernames

ROTATIONS = 5
TASKS = 8




@pytest.mark.slow
def test_async_pool_tasks_see_no_error_across_rotations(
        vaultdb_stack: VaultDBStack, vaultdb_role_name: str,
        make_provider: Callable[..., CredentialProvider], conninfo: str) -> None:
    provider = make_provider()
    revoked = revoked_usernames(provider)
    seen: set[str] = set()
    errors: list[BaseException] = []

    async def main() -> int:
        count = 0
        stop = asyncio.Event()
        async with AsyncConnectionPool(conninfo, provider=provider, min_size=2,
                                       max_size=TASKS // 2, open=False) as pool:

            async def work() -> None:
                nonlocal count
                while not stop.is_set():
                    try:
                        async with pool.connection() as conn:
                            cur = await conn.execute("SELECT session_user")
                            row = await cur.fetchone()
                            assert row is not None
                            seen.add(row[0])
                            await conn.execute("SELECT pg_sleep(0.002)")
                        count += 1
                    except Exception as exc:
                        errors.append(exc)

            tasks = [asyncio.create_task(work()) for _ in range(TASKS)]
            try:
                while not (provider.status().rotations >= ROTATIONS
                           and len(revoked) >= ROTATIONS):
                    await asyncio.sleep(0.05)
                    assert not errors
            finally:
                stop.set()
                await asyncio.gather(*tasks)
        return count

    count = asyncio.run(asyncio.wait_for(main(), timeout=45))
    assert errors == []
    assert count > 0
    assert_retired_users_gone(vaultdb_stack, provider, vaultdb_role_name, seen,
                              at_least=ROTATIONS - 1)
