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

from vaultdb import CredentialProvider, LeaseRevoked
from vaultdb.testing import VaultDBStack, wait_for
from vaultdb.testing import database_users_of_role as roles_of

ROTATIONS = 5
THREADS = 4


def revoked_users(provider: CredentialProvider) -> set[str]:
    """Users whose lease the provider revoked (filled in by a listener)."""
    users: set[str] = set()
    provider.subscribe(lambda e: users.add(e.credentials.username), LeaseRevoked)
    return users


def assert_old_users_gone(stack: VaultDBStack, provider: CredentialProvider, role: str,
                          seen: set[str], rotations: int = ROTATIONS) -> None:
    """Every user but the current one is revoked, dropped, and has no session left."""
    current = provider.credentials().username
    old = seen - {current}
    assert len(old) >= rotations - 1
    wait_for(lambda: not (roles_of(stack, role) & old), timeout=15)
    assert not set(stack.session_users()) & old


@pytest.mark.slow
@pytest.mark.parametrize(("driver", "rotations"),
                         [("postgresql+psycopg", ROTATIONS), ("postgresql+psycopg2", 2)])
def test_threads_see_no_error_across_rotations(
        vaultdb_stack: VaultDBStack, vaultdb_role_name: str,
        make_provider: Callable[..., CredentialProvider], pg_url: Callable[[str], str],
        driver: str, rotations: int) -> None:
    provider = make_provider()
    revoked = revoked_users(provider)
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
    assert_old_users_gone(vaultdb_stack, provider, vaultdb_role_name, seen, rotations)
    engine.dispose()
