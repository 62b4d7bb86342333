"""The test stack itself, proven against the real servers it starts.

Everything else in the suite trusts this stack to behave like production OpenBao + PostgreSQL
(+ Kubernetes TokenReview), so these tests check the behaviours other tests rely on.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import textwrap
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import hvac
import hvac.exceptions
import psycopg
import pytest
import requests

from vaultdb.testing import APP_POLICY, VaultDBStack


def _client(stack: VaultDBStack, token: str | None = None, timeout: float = 10) -> hvac.Client:
    return hvac.Client(url=stack.vault_addr, token=token, timeout=timeout)


def _connect(stack: VaultDBStack, user: str, password: str) -> psycopg.Connection[Any]:
    return psycopg.connect(
        stack.postgres.dsn(user=user, password=password), connect_timeout=5, autocommit=True
    )


def _wait_for(predicate: Any, timeout: float = 15.0, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return True


# --------------------------------------------------------------------------- basics


def test_stack_is_up(vaultdb_stack: VaultDBStack) -> None:
    stack = vaultdb_stack
    assert stack.root_client().sys.read_health_status(method="GET")["sealed"] is False
    assert stack.sql("SELECT current_database(), current_user") == [("app", "postgres")]
    assert stack.sql("SHOW listen_addresses") == [("127.0.0.1",)]
    ctx = ssl.create_default_context(cadata=stack.kube.ca_pem)
    with urllib.request.urlopen(f"{stack.kube.url}/healthz", context=ctx, timeout=5) as resp:
        assert resp.read() == b"ok"
    assert stack.postgres.host == "127.0.0.1"
    assert stack.postgres.database == "app"
    assert (stack.workdir / "openbao" / "openbao.log").is_file()
    assert (stack.workdir / "postgres.log").is_file()


def test_secrets_stay_out_of_repr(vaultdb_stack: VaultDBStack) -> None:
    stack = vaultdb_stack
    password = stack.postgres.superuser_password
    for text in (
        repr(stack),
        str(stack),
        repr(stack.vault),
        repr(stack.postgres),
        repr(stack.postgres.superuser_dsn),
        str(stack.postgres.superuser_dsn),
        repr(stack.kube),
    ):
        assert stack.root_token not in text
        assert password not in text
    assert password in stack.postgres.superuser_dsn.conninfo


def test_env_has_addresses_but_no_root_token_by_default(vaultdb_stack: VaultDBStack) -> None:
    env = vaultdb_stack.env(EXTRA="1")
    assert env["VAULT_ADDR"] == vaultdb_stack.vault_addr
    assert env["EXTRA"] == "1"
    assert vaultdb_stack.root_token not in env.values()
    assert "VAULT_TOKEN" not in env
    assert vaultdb_stack.env(include_root_token=True)["VAULT_TOKEN"] == vaultdb_stack.root_token


def test_postgres_checks_passwords(vaultdb_stack: VaultDBStack) -> None:
    su = vaultdb_stack.postgres.superuser_dsn
    with psycopg.connect(su.conninfo, connect_timeout=5) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(vaultdb_stack.postgres.dsn(su.user, "wrong"), connect_timeout=5)


# --------------------------------------------------------------------------- auth methods


def test_kubernetes_login_with_service_account_token(
    vaultdb_stack: VaultDBStack, vaultdb_role_name: str
) -> None:
    stack = vaultdb_stack
    stack.create_kubernetes_role(vaultdb_role_name, service_account="web", namespace="shop")
    jwt = stack.kube.issue_token(service_account="web", namespace="shop")
    client = _client(stack)
    auth = client.auth.kubernetes.login(vaultdb_role_name, jwt)["auth"]
    assert APP_POLICY in auth["token_policies"]
    assert auth["metadata"]["service_account_namespace"] == "shop"
    assert auth["metadata"]["service_account_name"] == "web"
    assert auth["metadata"]["service_account_uid"] == stack.kube.service_account_uid("shop", "web")
    assert client.is_authenticated()


def test_kubernetes_login_rejects_bad_tokens(
    vaultdb_stack: VaultDBStack, vaultdb_role_name: str
) -> None:
    stack = vaultdb_stack
    stack.create_kubernetes_role(vaultdb_role_name)
    client = _client(stack)

    revoked = stack.kube.issue_token()
    client.auth.kubernetes.login(vaultdb_role_name, revoked, use_token=False)
    stack.kube.revoke_token(revoked)
    with pytest.raises(hvac.exceptions.VaultError):
        client.auth.kubernetes.login(vaultdb_role_name, revoked, use_token=False)

    expired = stack.kube.issue_token(ttl=-30)
    with pytest.raises(hvac.exceptions.VaultError):
        client.auth.kubernetes.login(vaultdb_role_name, expired, use_token=False)

    wrong_sa = stack.kube.issue_token(service_account="intruder")
    with pytest.raises(hvac.exceptions.VaultError):
        client.auth.kubernetes.login(vaultdb_role_name, wrong_sa, use_token=False)

    stack.kube.fail_reviews = True
    try:
        with pytest.raises(hvac.exceptions.VaultError):
            client.auth.kubernetes.login(vaultdb_role_name, stack.kube.issue_token())
    finally:
        stack.kube.fail_reviews = False


def test_kubernetes_role_audience(vaultdb_stack: VaultDBStack, vaultdb_role_name: str) -> None:
    stack = vaultdb_stack
    stack.create_kubernetes_role(vaultdb_role_name, audience="vault")
    client = _client(stack)
    good = stack.kube.issue_token(audiences=("vault",))
    client.auth.kubernetes.login(vaultdb_role_name, good, use_token=False)
    wrong = stack.kube.issue_token(audiences=("something-else",))
    with pytest.raises(hvac.exceptions.VaultError):
        client.auth.kubernetes.login(vaultdb_role_name, wrong, use_token=False)


def test_token_file_login(
    vaultdb_stack: VaultDBStack, vaultdb_role_name: str, tmp_path: Path
) -> None:
    stack = vaultdb_stack
    stack.create_kubernetes_role(vaultdb_role_name)
    path = stack.write_service_account_token(tmp_path / "sa" / "token", ttl=600)
    first = path.read_text()
    _client(stack).auth.kubernetes.login(vaultdb_role_name, first)
    stack.write_service_account_token(path)  # kubelet-style rotation in place
    assert path.read_text() != first
    assert [p.name for p in path.parent.iterdir()] == ["token"]  # no temp files left


def test_jwt_login_without_api_server(vaultdb_stack: VaultDBStack, vaultdb_role_name: str) -> None:
    stack = vaultdb_stack
    stack.create_jwt_role(vaultdb_role_name, service_account="worker", namespace="jobs")
    reviews_before = stack.kube.review_requests
    client = _client(stack)
    jwt = stack.kube.issue_token(service_account="worker", namespace="jobs", audiences=("vault",))
    auth = client.auth.jwt.jwt_login(vaultdb_role_name, jwt, path="jwt")["auth"]
    assert APP_POLICY in auth["token_policies"]
    assert stack.kube.review_requests == reviews_before  # offline signature check only
    other = stack.kube.issue_token(service_account="other", namespace="jobs", audiences=("vault",))
    with pytest.raises(hvac.exceptions.VaultError):
        client.auth.jwt.jwt_login(vaultdb_role_name, other, path="jwt")
    expired = stack.kube.issue_token(
        service_account="worker", namespace="jobs", audiences=("vault",), ttl=-120
    )
    with pytest.raises(hvac.exceptions.VaultError):
        client.auth.jwt.jwt_login(vaultdb_role_name, expired, path="jwt")


def test_approle_login(vaultdb_stack: VaultDBStack, vaultdb_role_name: str) -> None:
    role_id, secret_id = vaultdb_stack.create_approle(vaultdb_role_name, token_ttl=30)
    client = _client(vaultdb_stack)
    auth = client.auth.approle.login(role_id, secret_id)["auth"]
    assert APP_POLICY in auth["token_policies"]
    assert auth["lease_duration"] == 30
    with pytest.raises(hvac.exceptions.VaultError):
        client.auth.approle.login(role_id, "not-the-secret")


def test_create_token_and_app_policy(vaultdb_stack: VaultDBStack) -> None:
    token = vaultdb_stack.create_token(ttl=30)
    client = _client(vaultdb_stack, token)
    info = client.auth.token.lookup_self()["data"]
    assert APP_POLICY in info["policies"]
    assert info["renewable"] is True
    with pytest.raises(hvac.exceptions.Forbidden):
        client.sys.list_mounted_secrets_engines()


# --------------------------------------------------------------------------- database engine


def test_dynamic_credentials_lifecycle(vaultdb_stack: VaultDBStack, vaultdb_role_name: str) -> None:
    stack = vaultdb_stack
    stack.create_database_role(vaultdb_role_name, default_ttl=60, max_ttl=120)
    app = _client(stack, stack.create_token())
    creds = app.read(f"database/creds/{vaultdb_role_name}")
    user, password = creds["data"]["username"], creds["data"]["password"]
    assert user in stack.dynamic_db_roles()

    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        _connect(stack, user, password + "x")
    conn = _connect(stack, user, password)
    table = f"t_{uuid.uuid4().hex[:8]}"
    conn.execute(f"CREATE TABLE {table} (id int)")
    conn.execute(f"INSERT INTO {table} VALUES (1)")
    assert stack.session_users().get(user) == 1
    owner = stack.sql("SELECT tableowner FROM pg_tables WHERE tablename = %s", [table])
    assert owner == [("app_owner",)]

    app.sys.revoke_lease(creds["lease_id"])  # sync by default: statements ran on return
    assert user not in stack.dynamic_db_roles()
    assert user not in stack.session_users()
    assert conn.closed or conn.broken or _raises_on_use(conn)
    assert stack.sql(f"SELECT count(*) FROM {table}") == [(1,)]  # data kept by the owner
    stack.sql(f"DROP TABLE {table}")


def _raises_on_use(conn: psycopg.Connection[Any]) -> bool:
    try:
        conn.execute("SELECT 1")
    except psycopg.Error:
        return True
    return False


def test_expired_lease_is_revoked_by_vault(
    vaultdb_stack: VaultDBStack, vaultdb_role_name: str
) -> None:
    stack = vaultdb_stack
    stack.create_database_role(vaultdb_role_name, default_ttl=2, max_ttl=4)
    user = stack.root_client().read(f"database/creds/{vaultdb_role_name}")["data"]["username"]
    assert user in stack.dynamic_db_roles()
    assert _wait_for(lambda: user not in stack.dynamic_db_roles(), timeout=20)


def test_static_role(vaultdb_stack: VaultDBStack, vaultdb_role_name: str) -> None:
    stack = vaultdb_stack
    username = f"static_{uuid.uuid4().hex[:8]}"
    stack.create_static_role(vaultdb_role_name, username=username, rotation_period=600)
    app = _client(stack, stack.create_token())
    data = app.read(f"database/static-creds/{vaultdb_role_name}")["data"]
    assert data["username"] == username
    with _connect(stack, username, data["password"]) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (username,)


def test_restart_postgres_keeps_roles_and_vault_reconnects(
    vaultdb_stack: VaultDBStack, vaultdb_role_name: str
) -> None:
    stack = vaultdb_stack
    stack.create_database_role(vaultdb_role_name, default_ttl=60)
    port = stack.postgres.port
    stack.restart_postgres()
    assert stack.postgres.port == port
    creds = stack.root_client().read(f"database/creds/{vaultdb_role_name}")["data"]
    with _connect(stack, creds["username"], creds["password"]) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


# --------------------------------------------------------------------------- faults


def test_pause_and_resume_vault(vaultdb_stack: VaultDBStack) -> None:
    stack = vaultdb_stack
    client = _client(stack, stack.root_token, timeout=1)
    stack.pause_vault()
    try:
        with pytest.raises(requests.exceptions.RequestException):
            client.sys.read_health_status(method="GET")
    finally:
        stack.resume_vault()
    assert client.sys.read_health_status(method="GET")["sealed"] is False


def test_restart_vault_replays_configuration(
    vaultdb_stack: VaultDBStack, vaultdb_role_name: str
) -> None:
    stack = vaultdb_stack
    stack.create_kubernetes_role(vaultdb_role_name)
    stack.create_database_role(vaultdb_role_name, default_ttl=60)
    stack.write_policy(
        f"{vaultdb_role_name}-extra", 'path "sys/mounts" { capabilities = ["read"] }'
    )
    role_id, secret_id = stack.create_approle(vaultdb_role_name)
    old_token = stack.create_token()
    addr = stack.vault_addr

    stack.restart_vault()

    assert stack.vault_addr == addr
    with pytest.raises(hvac.exceptions.Forbidden):
        _client(stack, old_token).auth.token.lookup_self()  # state is gone...
    client = _client(stack)  # ...configuration is back
    client.auth.kubernetes.login(vaultdb_role_name, stack.kube.issue_token())
    creds = client.read(f"database/creds/{vaultdb_role_name}")["data"]
    with _connect(stack, creds["username"], creds["password"]):
        pass
    _client(stack).auth.approle.login(role_id, secret_id)
    policies = stack.root_client().sys.list_policies()["data"]["policies"]
    assert f"{vaultdb_role_name}-extra" in policies


def test_restart_vault_without_reconfigure(vaultdb_stack: VaultDBStack) -> None:
    stack = vaultdb_stack
    stack.restart_vault(reconfigure=False)
    try:
        mounts = stack.root_client().sys.list_mounted_secrets_engines()["data"]
        assert "database/" not in mounts
    finally:
        stack.restart_vault()
    assert "database/" in stack.root_client().sys.list_mounted_secrets_engines()["data"]


# --------------------------------------------------------------------------- isolation


_CHILD = textwrap.dedent(
    """
    import json, os, sys
    from vaultdb.testing import VaultDBStack
    stack = VaultDBStack.start()
    print(json.dumps({
        "addr": stack.vault_addr,
        "pg_port": stack.postgres.port,
        "kube": stack.kube.url,
        "workdir": str(stack.workdir),
        "pids": [stack.vault.pid, stack.postgres.pid],
    }), flush=True)
    sys.stdin.read()   # hold until the parent says so, then die without cleanup
    os._exit(1)
    """
)


def test_second_stack_in_other_process_and_crash_cleanup(vaultdb_stack: VaultDBStack) -> None:
    """A concurrent stack gets its own ports/dirs; a crashed owner leaves no servers behind."""
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        info = json.loads(child.stdout.readline())
        assert info["addr"] != vaultdb_stack.vault_addr
        assert info["pg_port"] != vaultdb_stack.postgres.port
        assert info["kube"] != vaultdb_stack.kube.url
        assert info["workdir"] != str(vaultdb_stack.workdir)
        assert all(_pid_alive(pid) for pid in info["pids"])
        child.stdin.close()  # child exits via os._exit: no atexit, no close()
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert _wait_for(lambda: not any(_pid_alive(pid) for pid in info["pids"]), timeout=20)
    assert _wait_for(lambda: not Path(info["workdir"]).exists(), timeout=10)
    assert vaultdb_stack.sql("SELECT 1") == [(1,)]  # ours is unaffected
