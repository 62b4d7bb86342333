"""Revocation at close / atexit / SIGTERM, and fork ownership, with real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psycopg
import pytest

from vaultdb import CredentialProvider, KubernetesAuth
from vaultdb.testing import VaultDBStack
from vaultdb.testing import database_users_of_role as roles_of

CHILD = textwrap.dedent("""
    import json, os, signal, sys, time
    from vaultdb import CredentialProvider
    provider = CredentialProvider.from_env()
    if os.environ.get("PREFETCH"):
        provider.start(wait=False)
        while provider.state.value != "running":
            time.sleep(0.01)
    if os.environ.get("FIRST_USE_ON_A_THREAD"):
        import threading
        worker = threading.Thread(target=provider.credentials)
        worker.start()
        worker.join()
    creds = provider.credentials()
    print(json.dumps({"user": creds.username, "pid": os.getpid()}), flush=True)
    mode = sys.argv[1]
    if mode == "wait":
        while True:
            time.sleep(0.1)
    elif mode == "exit":
        sys.exit(0)
    elif mode == "close":
        provider.close()
        provider.close()  # idempotent
        print(json.dumps({"closed": True}), flush=True)
""")


def child_env(stack: VaultDBStack, role: str, token_file: Path, **extra: str) -> dict[str, str]:
    return stack.env(VAULTDB_ROLE=role, VAULTDB_AUTH_METHOD="kubernetes",
                     VAULTDB_AUTH_ROLE=role, VAULTDB_TOKEN_PATH=str(token_file),
                     VAULTDB_DRAIN_SECONDS="1", **extra)


@pytest.fixture
def role(vaultdb_stack: VaultDBStack, vaultdb_role_name: str) -> str:
    vaultdb_stack.create_database_role(vaultdb_role_name, default_ttl=30, max_ttl=60)
    vaultdb_stack.create_kubernetes_role(vaultdb_role_name)
    return vaultdb_role_name


def start_child(stack: VaultDBStack, role: str, token_file: Path, mode: str,
                **extra: str) -> tuple[subprocess.Popen[str], dict[str, object]]:
    proc = subprocess.Popen([sys.executable, "-c", CHILD, mode], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=child_env(stack, role, token_file, **extra))
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise AssertionError(f"child failed: {proc.communicate(timeout=10)[1]}")
    return proc, json.loads(line)


@pytest.mark.parametrize("mode", ["exit", "close"])
def test_revoked_at_exit_and_at_close(vaultdb_stack, role, token_file, mode):
    proc, info = start_child(vaultdb_stack, role, token_file, mode)
    assert str(info["user"]).startswith("v-")
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert roles_of(vaultdb_stack, role) == set()


@pytest.mark.parametrize("how", ["first-use", "start-wait-false", "first-use-on-a-thread"])
def test_sigterm_revokes_then_exits_like_sigterm(vaultdb_stack, role, token_file, how):
    proc, info = start_child(vaultdb_stack, role, token_file, "wait",
                             PREFETCH="1" if how == "start-wait-false" else "",
                             FIRST_USE_ON_A_THREAD="1" if how.endswith("thread") else "")
    assert info["user"] in roles_of(vaultdb_stack, role)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGTERM  # the process still dies of SIGTERM
    assert roles_of(vaultdb_stack, role) == set()


def test_sigterm_handler_not_installed_when_disabled(vaultdb_stack, role, token_file):
    proc, info = start_child(vaultdb_stack, role, token_file, "wait",
                             VAULTDB_HANDLE_SIGTERM="false")
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGTERM
    # Default SIGTERM skips atexit: the lease is left to expire (what the option opts into).
    assert info["user"] in roles_of(vaultdb_stack, role)
    vaultdb_stack.root_client().sys.revoke_prefix(f"database/creds/{role}")


def test_existing_sigterm_handler_is_left_alone(vaultdb_stack, role, token_file):
    code = textwrap.dedent("""
        import signal, sys
        seen = []
        signal.signal(signal.SIGTERM, lambda s, f: seen.append(s))
        from vaultdb import CredentialProvider
        CredentialProvider.from_env().credentials()
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
        import os; os.kill(os.getpid(), signal.SIGTERM)
        assert seen == [signal.SIGTERM], seen
        print("kept")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=child_env(vaultdb_stack, role, token_file), timeout=60)
    assert out.returncode == 0, out.stderr
    assert "kept" in out.stdout
    assert roles_of(vaultdb_stack, role) == set()  # atexit still revoked


def test_forked_child_gets_its_own_lease_and_never_revokes_the_parents(
        vaultdb_stack, role, token_file):
    provider = CredentialProvider(role, auth=KubernetesAuth(role=role,
                                                            token_path=str(token_file)),
                                  vault_addr=vaultdb_stack.vault_addr, handle_sigterm=False)
    try:
        parent = provider.credentials()
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            try:
                os.close(read_fd)
                child = provider.credentials()
                provider.close()
                os.write(write_fd, json.dumps({"user": child.username,
                                               "gen": child.generation}).encode())
            finally:
                os._exit(0)
        os.close(write_fd)
        with os.fdopen(read_fd) as pipe:
            result = json.loads(pipe.read())
        os.waitpid(pid, 0)
        assert result["user"] != parent.username  # one lease per process
        assert result["user"] not in roles_of(vaultdb_stack, role)  # the child revoked its own
        assert parent.username in roles_of(vaultdb_stack, role)  # and not the parent's
        with psycopg.connect(host=vaultdb_stack.postgres.host, port=vaultdb_stack.postgres.port,
                             dbname="app", user=parent.username, password=parent.password,
                             connect_timeout=5) as conn:
            conn.execute("SELECT 1")
        assert provider.credentials() is parent
    finally:
        provider.close()
    assert roles_of(vaultdb_stack, role) == set()


def test_close_is_idempotent_and_closed_providers_refuse_use(make_provider):
    from vaultdb import ProviderClosedError

    provider = make_provider(default_ttl=30, max_ttl=60)
    provider.credentials()
    provider.close()
    provider.close()
    with pytest.raises(ProviderClosedError):
        provider.credentials(timeout=0)


def test_revocation_is_bounded_when_vault_is_frozen(make_provider, vaultdb_stack):
    provider = make_provider(default_ttl=30, max_ttl=60, request_timeout=0.5,
                             revoke_timeout=2)
    creds = provider.credentials()
    vaultdb_stack.pause_vault()
    try:
        started = time.monotonic()
        provider.close()
        elapsed = time.monotonic() - started
    finally:
        vaultdb_stack.resume_vault()
    # Not a timing assertion on the machine's speed: close() gave up instead of hanging
    # (pytest-timeout would catch a hang); the lease is left to its TTL.
    assert elapsed < 60
    vaultdb_stack.root_client().sys.revoke_lease(creds.lease_id)


def test_close_after_the_login_token_died_revokes_nothing_and_warns_nothing(
        make_provider, vaultdb_stack, token_file, caplog):
    """Vault revoked the lease with its token; close() must not report a misleading 403."""
    import logging

    from vaultdb.testing import wait_for

    provider = make_provider(default_ttl=30, max_ttl=60, token_ttl=3, token_max_ttl=3)
    creds = provider.credentials()
    token_file.write_text("not-a-jwt")  # every re-login fails: the login token runs out

    def token_dead() -> bool:
        # Either the engine still holds the expired token, or it already noticed the
        # rejection and dropped it (status then reports no token at all).
        left = provider.status().token_seconds_left
        return left is None or left < -0.5

    wait_for(token_dead, timeout=15)
    # Vault's expiration manager revoked the lease with the token: the user is gone.
    wait_for(lambda: creds.username not in roles_of(vaultdb_stack, provider.role), timeout=30)
    caplog.clear()
    caplog.set_level(logging.DEBUG, logger="vaultdb")
    provider.close()
    assert not [r for r in caplog.records
                if r.levelno >= logging.WARNING and "revoke" in r.getMessage()]
    assert "ended with its login token" in caplog.text
