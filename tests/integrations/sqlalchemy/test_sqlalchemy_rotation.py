"""Queries keep flowing through SQLAlchemy engines while the credentials rotate underneath.

Real OpenBao and PostgreSQL; leases live about three seconds, so each test sees several
rotations. The stack's revocation statements terminate the old user's sessions and drop it,
so a connection kept past its drain window would fail a query: zero errors is the proof.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from sqlalchemy import text
from vaultdb.integrations.sqlalchemy import create_engine

from vaultdb import CredentialProvider
from vaultdb.testing import VaultDBStack, assert_retired_users_gone, revoked_usernames, wait_for

ROTATIONS = 5
THREADS = 4




@pytest.mark.slow
@pytest.mark.parametrize(("driver", "rotations"),
                         [("postgresql+psycopg", ROTATIONS), ("postgresql+psycopg2", 2)])
def test_threads_see_no_error_across_rotations(
        vaultdb_stack: VaultDBStack, vaultdb_role_name: str,
        make_provider: Callable[..., CredentialProvider], pg_url: Callable[[str], str],
        driver: str, rotations: int) -> None:
    provider = make_provider()
    revoked = revoked_usernames(provider)
    engine = create_engine(pg_url(driver), provider=provider, pool_size=THREADS,
                           max_overflow=2)
    seen: set[str] = set()
    errors: list[BaseException] = []
    queries = [0] * THREADS
    stop = threading.Event()

    def work(i: int) -> None:
        while not stop.is_set():
            try:
                with engine.connect() as conn:
                    seen.add(conn.execute(text("SELECT session_user")).scalar_one())
                    conn.execute(text("SELECT pg_sleep(0.002)"))
                queries[i] += 1
            except Exception as exc:
                errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: provider.status().rotations >= rotations and len(revoked) >= rotations,
                 timeout=45)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == []
    assert all(n > 0 for n in queries)
    assert_retired_users_gone(vaultdb_stack, provider, vaultdb_role_name, seen,
                              at_least=rotations - 1)
    engine.dispose()
