"""A real Celery worker whose Redis broker (and result backend) user comes from Vault.

The app module is the recipe of docs/redis.md: kombu instantiates the class named in the broker
URL's ``credential_provider`` query parameter with no arguments, so the class wraps the
process's one provider. The worker runs prefork with one child: the main process consumes
from the broker as its own ACL user, the child stores results as another (its provider was
forked, so it fetched its own lease), and the test process sends as a third.
"""

from __future__ import annotations

import contextlib
import importlib
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vaultdb.testing import VaultDBStack, VaultRedis, wait_for

pytest.importorskip("celery")
kombu_pools = pytest.importorskip("kombu.pools")

APP = textwrap.dedent('''
    """The docs/redis.md Celery recipe."""
    import os

    from celery import Celery

    from vaultdb import CredentialProvider
    from vaultdb.integrations.celery import install
    from vaultdb.integrations.redis import RedisCredentials

    provider = CredentialProvider.from_env()  # VAULTDB_ROLE: a Redis role


    class BrokerCredentials(RedisCredentials):
        """kombu and Celery build this with no arguments: hand them the process's provider."""

        def __init__(self):
            super().__init__(provider)


    REDIS = os.environ["CELERY_REDIS_URL"]  # redis://host:6379/0, no user, no password
    app = Celery("vaultapp",
                 broker=f"{REDIS}?credential_provider=vaultapp.BrokerCredentials",
                 backend=REDIS)
    app.conf.redis_backend_credential_provider = "vaultapp.BrokerCredentials"
    app.conf.broker_connection_retry_on_startup = True
    install()  # revoke after Celery's warm shutdown, in the main process and each child


    @app.task
    def whoami():
        return os.getpid(), provider.credentials().username
''')


@pytest.fixture
def app_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    (tmp_path / "vaultapp.py").write_text(APP)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    module = sys.modules.pop("vaultapp", None)
    if module is not None:
        module.app.close()
        kombu_pools.reset()  # kombu pools connections per broker URL, process-wide
        module.provider.close()


def worker_env(stack: VaultDBStack, kit: VaultRedis, role: str, app_dir: Path
               ) -> dict[str, str]:
    stack.create_kubernetes_role(role)
    token = stack.write_service_account_token(app_dir / role / "token")
    return stack.env(VAULTDB_ROLE=role, VAULTDB_AUTH_METHOD="kubernetes",
                     VAULTDB_AUTH_ROLE=role, VAULTDB_TOKEN_PATH=str(token),
                     VAULTDB_DRAIN_SECONDS="1", CELERY_REDIS_URL=kit.url(),
                     PYTHONPATH=str(app_dir))


@contextlib.contextmanager
def celery_worker(env: dict[str, str], app_dir: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``celery worker`` (prefork, one child) on the app; killed in teardown if still up."""
    log = app_dir / "worker.log"
    with open(log, "wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "vaultapp", "worker", "--pool=prefork",
             "--concurrency=1", "--without-gossip", "--without-mingle", "--without-heartbeat",
             "--loglevel=INFO"], cwd=app_dir, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
    try:
        wait_for(lambda: b"ready." in log.read_bytes() or worker.poll() is not None,
                 timeout=60)
        assert worker.poll() is None, log.read_text()
        yield worker
        worker.send_signal(signal.SIGTERM)  # warm shutdown, then the vaultdb hooks revoke
        worker.wait(timeout=60)
        assert worker.returncode == 0, log.read_text()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=10)


def sending_app(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """The app module imported here: the sending side, with this process's own provider."""
    for name, value in env.items():
        if name.startswith(("VAULTDB_", "VAULT_", "CELERY_")):
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("VAULTDB_HANDLE_SIGTERM", "false")
    return importlib.import_module("vaultapp")


@pytest.mark.slow
def test_worker_processes_a_task_through_a_broker_user_from_vault(
        vaultdb_stack: VaultDBStack, vaultdb_redis: VaultRedis, vaultdb_role_name: str,
        app_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    role = vaultdb_role_name
    vaultdb_redis.create_role(role, default_ttl=60, max_ttl=120)
    env = worker_env(vaultdb_stack, vaultdb_redis, role, app_dir)
    with celery_worker(env, app_dir) as worker:
        vaultapp = sending_app(env, monkeypatch)
        pid, child_user = vaultapp.whoami.delay().get(timeout=30)
        sender = vaultapp.provider.credentials().username
        assert pid != worker.pid
        users = vaultdb_redis.users_of_role(role)
        # The worker's main process (broker consumer), its child (results) and this process.
        assert len(users) == 3 and {child_user, sender} < users, users
        worker_user = (users - {child_user, sender}).pop()
        assert vaultdb_redis.server.clients().get(worker_user, 0) >= 1
    assert vaultdb_redis.users_of_role(role) == {sender}
    assert "Task vaultapp.whoami" in (app_dir / "worker.log").read_text()


@pytest.mark.slow
def test_worker_reconnects_when_its_broker_user_is_rotated_out(
        vaultdb_stack: VaultDBStack, vaultdb_redis: VaultRedis, vaultdb_role_name: str,
        app_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """kombu's pool is not ours to hook: revoking the old user cuts the consumer's
    connection, and Celery reconnects with the credentials the provider hands out now."""
    role, sender_role = vaultdb_role_name, f"{vaultdb_role_name[:20]}-sender"
    vaultdb_redis.create_role(role, default_ttl=4, max_ttl=6)  # rotates every ~4.5 s
    vaultdb_redis.create_role(sender_role, default_ttl=60, max_ttl=120)
    with celery_worker(worker_env(vaultdb_stack, vaultdb_redis, role, app_dir),
                       app_dir) as worker:
        (first,) = vaultdb_redis.users_of_role(role)  # the consumer's; no child has one yet
        vaultapp = sending_app(worker_env(vaultdb_stack, vaultdb_redis, sender_role, app_dir),
                               monkeypatch)
        assert vaultapp.whoami.delay().get(timeout=30)[0] != worker.pid
        wait_for(lambda: first not in vaultdb_redis.users_of_role(role), timeout=30)
        assert vaultapp.whoami.delay().get(timeout=30)[0] != worker.pid
    assert vaultdb_redis.users_of_role(role) == set()
    log = (app_dir / "worker.log").read_text()
    assert "Connection to broker lost" in log and log.count("succeeded in") == 2
