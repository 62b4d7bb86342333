"""Revocation of Redis ACL users at exit, at close and on SIGTERM, with real processes: one
ACL user per process, gone when the process ends gracefully."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from vaultdb.testing import VaultDBStack, VaultRedis

CHILD = textwrap.dedent("""
    import json, os, sys, time
    from vaultdb import CredentialProvider
    from vaultdb.integrations.redis import from_url

    provider = CredentialProvider.from_env()
    client = from_url(os.environ["REDIS_URL"], provider=provider, decode_responses=True)
    client.set(f"pid:{os.getpid()}", 1, ex=60)
    print(json.dumps({"user": client.acl_whoami()}), flush=True)
    mode = sys.argv[1]
    if mode == "wait":
        while True:
            client.ping()
            time.sleep(0.1)
    elif mode == "close":
        provider.close()
        print(json.dumps({"closed": True}), flush=True)
""")


@pytest.fixture
def role(vaultdb_stack: VaultDBStack, vaultdb_redis: VaultRedis, vaultdb_role_name: str) -> str:
    vaultdb_redis.create_role(vaultdb_role_name, default_ttl=30, max_ttl=60)
    vaultdb_stack.create_kubernetes_role(vaultdb_role_name)
    return vaultdb_role_name


def start_child(stack: VaultDBStack, kit: VaultRedis, role: str, tmp_path: Path, mode: str
                ) -> tuple[subprocess.Popen[str], str]:
    token = stack.write_service_account_token(tmp_path / "sa" / "token")
    env = stack.env(VAULTDB_ROLE=role, VAULTDB_AUTH_METHOD="kubernetes", VAULTDB_AUTH_ROLE=role,
                    VAULTDB_TOKEN_PATH=str(token), VAULTDB_DRAIN_SECONDS="1",
                    REDIS_URL=kit.url())
    proc = subprocess.Popen([sys.executable, "-c", CHILD, mode], text=True, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise AssertionError(f"child failed: {proc.communicate(timeout=10)[1]}")
    return proc, str(json.loads(line)["user"])


@pytest.mark.parametrize("mode", ["exit", "close"])
def test_revoked_at_exit_and_at_close(vaultdb_stack: VaultDBStack, vaultdb_redis: VaultRedis,
                                      role: str, tmp_path: Path, mode: str) -> None:
    proc, user = start_child(vaultdb_stack, vaultdb_redis, role, tmp_path, mode)
    assert user.startswith("V_")
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert vaultdb_redis.users_of_role(role) == set()


def test_sigterm_revokes_each_process_its_own_user(
        vaultdb_stack: VaultDBStack, vaultdb_redis: VaultRedis, role: str,
        tmp_path: Path) -> None:
    children = [start_child(vaultdb_stack, vaultdb_redis, role, tmp_path / str(i), "wait")
                for i in range(2)]
    users = {user for _proc, user in children}
    assert len(users) == 2  # one ACL user per process
    assert vaultdb_redis.users_of_role(role) == users
    first, second = children
    first[0].send_signal(signal.SIGTERM)
    first[0].communicate(timeout=30)
    assert first[0].returncode == -signal.SIGTERM  # the process still dies of SIGTERM
    # Its user is gone; the other process's user and connection are untouched.
    assert vaultdb_redis.users_of_role(role) == {second[1]}
    assert vaultdb_redis.server.clients().get(second[1], 0) == 1
    second[0].send_signal(signal.SIGTERM)
    second[0].communicate(timeout=30)
    assert vaultdb_redis.users_of_role(role) == set()
