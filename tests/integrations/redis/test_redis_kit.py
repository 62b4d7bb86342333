"""The Redis part of the test kit, proven against the server it starts: other tests trust it
to behave like a locked-down production Redis that Vault manages users on."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from vaultdb.testing import VaultDBStack, VaultRedis


def test_server_is_locked_down_and_its_admin_secret_stays_in_memory(
        vaultdb_redis: VaultRedis) -> None:
    server = vaultdb_redis.server
    with pytest.raises(redis.AuthenticationError):  # the default user is off
        redis.Redis(host=server.host, port=server.port, protocol=2).ping()
    with server.admin() as admin:
        assert admin.config_get("bind") == {"bind": "127.0.0.1"}
        assert admin.acl_getuser("default")["enabled"] is False
    secret = server.admin_password
    assert secret not in Path(f"/proc/{server.pid}/cmdline").read_text()
    for path in server.workdir.rglob("*"):
        if path.is_file():
            assert secret not in path.read_text(errors="replace"), path
    assert secret not in repr(server) + repr(vaultdb_redis)


def test_restart_vault_replays_the_redis_connection_and_roles(
        vaultdb_stack: VaultDBStack, vaultdb_redis: VaultRedis, vaultdb_role_name: str) -> None:
    # The cache-rw rules of docs/redis.md.
    rules = ["~cache:*", "+@read", "+@write", "+@connection", "-@dangerous"]
    vaultdb_redis.create_role(vaultdb_role_name, acl_rules=rules, default_ttl=60, max_ttl=120)
    vaultdb_stack.restart_vault()
    creds = vaultdb_stack.root_client().read(f"database/creds/{vaultdb_role_name}")["data"]
    assert vaultdb_redis.users_of_role(vaultdb_role_name) == {creds["username"]}
    with redis.Redis(host=vaultdb_redis.server.host, port=vaultdb_redis.server.port, db=1,
                     username=creds["username"], password=creds["password"],
                     health_check_interval=1) as client:
        assert client.ping() and client.set("cache:k", "v") and client.get("cache:k") == b"v"
        for refused in (lambda: client.set("other:k", "v"), client.flushall):
            with pytest.raises(redis.exceptions.NoPermissionError):  # the role's rules apply
                refused()
    vaultdb_stack.root_client().sys.revoke_prefix(f"database/creds/{vaultdb_role_name}")
