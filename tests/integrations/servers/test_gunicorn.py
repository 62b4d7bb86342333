"""gunicorn sync workers, with and without --preload: distinct users, revocation, rotation."""

from __future__ import annotations

import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor

import django
import pytest

from vaultdb.testing import database_users_of_role, wait_for


def users_by_worker(server, workers: int, timeout: float = 30) -> dict[int, str]:
    """Fill every worker with a slow request until each one has answered."""
    seen: dict[int, str] = {}

    def round_() -> bool:
        with ThreadPoolExecutor(workers) as pool:
            for data in pool.map(lambda _: server.get("&hold=0.3"), range(workers)):
                seen[data["pid"]] = data["session_user"]
        return len(seen) >= workers

    wait_for(round_, timeout=timeout, interval=0)
    return seen


@pytest.mark.parametrize("preload", [False, True], ids=["no-preload", "preload"])
def test_three_workers_three_users_and_sigterm_revokes_everything(example, preload):
    extra = ("--preload",) if preload else ()
    # With --preload the master fetches credentials before forking (EXAMPLE_WARMUP).
    server = example.gunicorn(*extra, workers=3, EXAMPLE_WARMUP="1" if preload else "0")
    seen = users_by_worker(server, 3)
    worker_users = set(seen.values())
    assert len(worker_users) == 3, seen
    assert all(u.startswith("v-") for u in worker_users)
    live = database_users_of_role(example.stack, example.role)
    assert worker_users <= live
    master_users = live - worker_users
    if preload:
        # The master's own lease: inherited by every worker, used and revoked by none.
        assert len(master_users) == 1, (live, seen)
        # A worker that exits (gunicorn replaces it) revokes its own lease only.
        victim_pid, victim_user = next(iter(seen.items()))
        os.kill(victim_pid, signal.SIGTERM)
        wait_for(lambda: victim_user not in database_users_of_role(example.stack, example.role),
                 timeout=20)
        assert master_users <= database_users_of_role(example.stack, example.role)
        assert server.get()["session_user"] not in master_users
    else:
        assert not master_users
    assert server.stop(signal.SIGTERM) == 0, server.output()
    # Graceful stop: every worker revoked at worker_exit, the master at on_exit.
    assert database_users_of_role(example.stack, example.role) == set(), server.output()
    out = server.output()
    assert "Traceback" not in out, out
    assert "password" not in out.lower(), out


@pytest.mark.ttl(3, 9)
@pytest.mark.parametrize("pool", [False, True], ids=["persistent", "django-pool"])
def test_rotation_during_a_request_loop_fails_no_request(example, pool):
    if pool and django.VERSION < (5, 1):
        pytest.skip("Django's pool needs Django 5.1+")
    server = example.gunicorn(workers=2, EXAMPLE_POOL="1" if pool else "0")
    failures: list[BaseException] = []
    users: dict[int, set[str]] = {}
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            try:
                data = server.get(timeout=10)
            except Exception as exc:
                failures.append(exc)
            else:
                users.setdefault(data["pid"], set()).add(data["session_user"])

    clients = [threading.Thread(target=client, daemon=True) for _ in range(4)]
    for t in clients:
        t.start()
    try:
        # Each worker went through at least one rotation (max_ttl 9 s), served all along.
        wait_for(lambda: len(users) >= 2 and all(len(u) >= 2 for u in users.values()),
                 timeout=40)
    finally:
        stop.set()
        for t in clients:
            t.join(15)
    assert failures == [], failures[:3]
    assert server.stop(signal.SIGTERM) == 0
    assert database_users_of_role(example.stack, example.role) == set(), server.output()
