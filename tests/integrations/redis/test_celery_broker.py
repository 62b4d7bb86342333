"""A real Celery worker whose Redis broker (and result backend) user comes from Vault.

The app module is the recipe of docs/redis.md: kombu instantiates the class named in the broker
URL's ``credential_provider`` query parameter with no arguments, so the class wraps the
process's one provider. The worker runs prefork with one child: the main process consumes
from the broker as its own ACL user, the child stores results as another (its provider was
forked, so it fetched its own lease), and the test process sends as a third.
"""

from __future__ import annotations

import importlib
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from vaultdb.testing import VaultDBStack, VaultRedis, wait_for

pytest.importorskip("celery")

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
        module.provider.close()


@pytest.mark.slow
def test_worker_processes_a_task_through_a_broker_user_from_vault(
        vaultdb_stack: VaultDBStack, vaultdb_redis: VaultRedis, vaultdb_role_name: str,
        app_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    role = vaultdb_role_name
    vaultdb_redis.create_role(role, default_ttl=60, max_ttl=120)
    vaultdb_stack.create_kubernetes_role(role)
    token = vaultdb_stack.write_service_account_token(app_dir / "sa" / "token")
    env = vaultdb_stack.env(VAULTDB_ROLE=role, VAULTDB_AUTH_METHOD="kubernetes",
                            VAULTDB_AUTH_ROLE=role, VAULTDB_TOKEN_PATH=str(token),
                            VAULTDB_DRAIN_SECONDS="1", CELERY_REDIS_URL=vaultdb_redis.url(),
                            PYTHONPATH=str(app_dir))
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
        for name, value in env.items():  # the sending side: this process, its own user
            if name.startswith(("VAULTDB_", "VAULT_", "CELERY_")):
                monkeypatch.setenv(name, value)
        monkeypatch.setenv("VAULTDB_HANDLE_SIGTERM", "false")
        vaultapp = importlib.import_module("vaultapp")
        pid, child_user = vaultapp.whoami.delay().get(timeout=30)
        sender = vaultapp.provider.credentials().username
        assert pid != worker.pid
        users = vaultdb_redis.users_of_role(role)
        # The worker's main process (broker consumer), its child (results) and this process.
        assert len(users) == 3 and {child_user, sender} < users, users
        worker_user = (users - {child_user, sender}).pop()
        assert vaultdb_redis.server.clients().get(worker_user, 0) >= 1
        worker.send_signal(signal.SIGTERM)  # warm shutdown, then the vaultdb hooks revoke
        worker.wait(timeout=60)
        assert worker.returncode == 0, log.read_text()
        assert vaultdb_redis.users_of_role(role) == {sender}
        assert "Task vaultapp.whoami" in log.read_text()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=10)
