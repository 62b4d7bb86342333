"""Commands keep flowing through redis-py clients while the ACL user rotates underneath.

Real OpenBao and redis-server; leases rotate about every 4.5 s. Revoking a Redis ACL user
disconnects its clients, so a pooled connection kept past its drain window would fail a
command: zero errors is the proof. redis-py's own retries are switched off, so they cannot
hide a connection cut under a command.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest
from redis.backoff import NoBackoff
from redis.retry import Retry
from vaultdb.integrations.redis import from_url, from_url_async

from vaultdb import CredentialProvider
from vaultdb.testing import VaultRedis, revoked_usernames, wait_for

ROTATIONS = 3
WORKERS = 4


def assert_retired_users_gone(kit: VaultRedis, provider: CredentialProvider, role: str,
                              seen: set[str]) -> None:
    retired = seen - {provider.credentials().username}
    assert len(retired) >= ROTATIONS - 1, seen
    wait_for(lambda: not (kit.users_of_role(role) & retired), timeout=15)
    assert not set(kit.server.clients()) & retired


@pytest.mark.slow
def test_threads_see_no_error_across_rotations(
        vaultdb_redis: VaultRedis, vaultdb_role_name: str,
        make_provider: Callable[..., CredentialProvider]) -> None:
    provider = make_provider()
    revoked = revoked_usernames(provider)
    client = from_url(vaultdb_redis.url(), provider=provider, retry=Retry(NoBackoff(), 0),
                      decode_responses=True)
    seen: set[str] = set()
    errors: list[BaseException] = []
    commands = [0] * WORKERS
    stop = threading.Event()

    def work(i: int) -> None:
        key = f"{vaultdb_role_name}:{i}"
        while not stop.is_set():
            try:
                seen.add(client.acl_whoami())
                with client.pipeline() as pipe:
                    pipe.incr(key).expire(key, 60).execute()
                commands[i] += 1
            except Exception as exc:
                errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(WORKERS)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: len(revoked) >= ROTATIONS or errors, timeout=45)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == []
    assert all(n > 0 for n in commands)
    assert_retired_users_gone(vaultdb_redis, provider, vaultdb_role_name, seen)
    client.close()


@pytest.mark.slow
def test_async_tasks_see_no_error_across_rotations(
        vaultdb_redis: VaultRedis, vaultdb_role_name: str,
        make_provider: Callable[..., CredentialProvider]) -> None:
    provider = make_provider()
    revoked = revoked_usernames(provider)
    seen: set[str] = set()
    errors: list[BaseException] = []

    async def main() -> int:
        client = from_url_async(vaultdb_redis.url(), provider=provider,
                                retry=Retry(NoBackoff(), 0), decode_responses=True)
        stop = asyncio.Event()
        count = 0

        async def work(i: int) -> None:
            nonlocal count
            key = f"{vaultdb_role_name}:{i}"
            while not stop.is_set():
                try:
                    seen.add(await client.acl_whoami())
                    async with client.pipeline() as pipe:
                        await pipe.incr(key).expire(key, 60).execute()
                    count += 1
                except Exception as exc:
                    errors.append(exc)

        tasks = [asyncio.create_task(work(i)) for i in range(WORKERS * 2)]
        try:
            while len(revoked) < ROTATIONS and not errors:
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            await asyncio.gather(*tasks)
            await client.aclose()
        return count

    count = asyncio.run(asyncio.wait_for(main(), timeout=45))
    assert errors == []
    assert count > 0
    assert_retired_users_gone(vaultdb_redis, provider, vaultdb_role_name, seen)
