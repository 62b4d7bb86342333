"""An asyncio engine (asyncpg) keeps serving concurrent tasks while credentials rotate."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from sqlalchemy import text
from vaultdb.integrations.sqlalchemy import create_async_engine

from vaultdb import CredentialProvider
from vaultdb.testing import VaultDBStack, assert_retired_users_gone, revoked_usernames

ROTATIONS = 5
TASKS = 8




@pytest.mark.slow
def test_async_tasks_see_no_error_across_rotations(
        vaultdb_stack: VaultDBStack, vaultdb_role_name: str,
        make_provider: Callable[..., CredentialProvider], pg_url: Callable[[str], str]) -> None:
    provider = make_provider()
    revoked = revoked_usernames(provider)
    seen: set[str] = set()
    errors: list[BaseException] = []

    async def main() -> int:
        engine = create_async_engine(pg_url("postgresql+asyncpg"), provider=provider,
                                     pool_size=TASKS // 2, max_overflow=2)
        stop = asyncio.Event()
        count = 0

        async def work() -> None:
            nonlocal count
            while not stop.is_set():
                try:
                    async with engine.connect() as conn:
                        result = await conn.execute(text("SELECT session_user"))
                        seen.add(result.scalar_one())
                        await conn.execute(text("SELECT pg_sleep(0.002)"))
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
    assert_retired_users_gone(vaultdb_stack, provider, vaultdb_role_name, seen,
                              at_least=ROTATIONS - 1)
