"""ProxyAuth through a real ``bao proxy`` (auto-auth with AppRole files, use_auto_auth_token).

vaultdb sends no token; the proxy adds its own. Credentials, renewals, rotations and
revocations all flow through the proxy, over TCP and over its Unix socket; the proxy's token is
never renewed or revoked by vaultdb, and credentials' deadlines come from their leases alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from vaultdb import AuthenticationError, CredentialProvider, ProxyAuth
from vaultdb import events as ev
from vaultdb.auth import auth_from_env
from vaultdb.testing import VaultDBStack, database_users_of_role, wait_for
from vaultdb.testing._baoproxy import BaoProxy


@pytest.fixture(scope="module")
def bao_proxy(vaultdb_stack: VaultDBStack, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[BaoProxy]:
    role_id, secret_id = vaultdb_stack.create_approle("proxy-sidecar", token_ttl=60)
    proxy = BaoProxy(tmp_path_factory.mktemp("bao-proxy"), vaultdb_stack.vault_addr,
                     role_id=role_id, secret_id=secret_id)
    proxy.start()
    yield proxy
    proxy.stop()


def _connect(stack: VaultDBStack, provider: CredentialProvider) -> str:
    creds = provider.credentials()
    with psycopg.connect(host=stack.postgres.host, port=stack.postgres.port,
                         dbname=stack.postgres.database, user=creds.username,
                         password=creds.password, connect_timeout=5) as conn:
        return str(conn.execute("SELECT session_user").fetchone()[0])  # type: ignore[index]


def test_credentials_renew_rotate_and_revoke_through_the_proxy(
        bao_proxy: BaoProxy, vaultdb_stack: VaultDBStack, vaultdb_role_name: str,
        vaultdb_provider_factory: Callable[..., CredentialProvider]) -> None:
    proxy_token = bao_proxy.lookup_self()
    seen: list[ev.LeaseEvent] = []
    provider = vaultdb_provider_factory(auth=ProxyAuth(), vault_addr=bao_proxy.addr,
                                        default_ttl=3, max_ttl=6)
    provider.subscribe(seen.append)
    started = time.monotonic()
    user = _connect(vaultdb_stack, provider)
    assert user == provider.credentials().username
    # The "login" holds no token: nothing to renew, nothing of its own to expire.
    status = provider.status()
    assert status.token_seconds_left is None and status.logins == 1
    creds = provider.credentials()
    assert creds.seconds_left() <= creds.lease_duration + 0.5
    assert creds.seconds_left() <= 3 + (time.monotonic() - started)
    wait_for(lambda: any(isinstance(e, ev.LeaseRenewed) for e in seen), timeout=20)
    wait_for(lambda: any(isinstance(e, ev.LeaseRotated) for e in seen), timeout=20)
    assert _connect(vaultdb_stack, provider) == provider.credentials().username
    assert not any(isinstance(e, (ev.LoginRenewed, ev.LoginExpired)) for e in seen)
    provider.close()
    assert database_users_of_role(vaultdb_stack, vaultdb_role_name) == set()
    assert any(isinstance(e, ev.LeaseRevoked) for e in seen)
    # The proxy's token is the proxy's: still alive, still the same one.
    assert bao_proxy.lookup_self()["issue_time"] == proxy_token["issue_time"]


def test_through_the_proxy_unix_socket(
        bao_proxy: BaoProxy, vaultdb_stack: VaultDBStack, vaultdb_role_name: str,
        vaultdb_provider_factory: Callable[..., CredentialProvider]) -> None:
    provider = vaultdb_provider_factory(auth=ProxyAuth(), vault_addr=bao_proxy.unix_addr,
                                        default_ttl=30, max_ttl=60)
    assert _connect(vaultdb_stack, provider) == provider.credentials().username
    assert database_users_of_role(vaultdb_stack, vaultdb_role_name)
    provider.close()
    assert database_users_of_role(vaultdb_stack, vaultdb_role_name) == set()
    assert bao_proxy.lookup_self()["issue_time"]


def test_proxy_auth_against_vault_itself_says_what_to_check(
        vaultdb_stack: VaultDBStack, vaultdb_provider_factory: Callable[..., CredentialProvider]
) -> None:
    """No proxy in front: Vault answers 403 to a request without a token; the error names the
    proxy settings instead of a policy."""
    provider = vaultdb_provider_factory(auth=ProxyAuth(), vault_addr=vaultdb_stack.vault_addr)
    with pytest.raises(AuthenticationError) as info:
        provider.credentials(timeout=5)
    assert "use_auto_auth_token" in str(info.value)


def test_proxy_from_the_environment(tmp_path: Path) -> None:
    assert isinstance(auth_from_env({"VAULTDB_AUTH_METHOD": "proxy"}), ProxyAuth)


def _proxy_accessors(stack: VaultDBStack, role_name: str) -> list[str]:
    root = stack.root_client()
    found = []
    for accessor in root.list("auth/token/accessors")["data"]["keys"]:
        data = root.write_data("auth/token/lookup-accessor", data={"accessor": accessor})["data"]
        if (data.get("meta") or {}).get("role_name") == role_name:
            found.append(accessor)
    return found


def test_the_proxy_token_revoked_behind_its_back_means_fresh_credentials(
        vaultdb_stack: VaultDBStack, tmp_path: Path, vaultdb_role_name: str,
        vaultdb_provider_factory: Callable[..., CredentialProvider]) -> None:
    """Leases die with the proxy's token; the proxy logs in again, and vaultdb (whose login
    holds no token and no accessor) finds the lease gone and fetches fresh credentials."""
    role_id, secret_id = vaultdb_stack.create_approle("proxy-short", token_ttl=6)
    proxy = BaoProxy(tmp_path / "proxy", vaultdb_stack.vault_addr, role_id=role_id,
                     secret_id=secret_id)
    proxy.start()
    try:
        seen: list[ev.LeaseEvent] = []
        provider = vaultdb_provider_factory(auth=ProxyAuth(), vault_addr=proxy.addr,
                                            default_ttl=6, max_ttl=60)
        provider.subscribe(seen.append)
        first = provider.credentials()
        for accessor in _proxy_accessors(vaultdb_stack, "proxy-short"):
            vaultdb_stack.root_client().write_data("auth/token/revoke-accessor",
                                                   data={"accessor": accessor})
        wait_for(lambda: first.username not in vaultdb_stack.dynamic_db_roles(), timeout=10)
        fresh = wait_for(lambda: next((e.credentials for e in seen
                                       if isinstance(e, ev.LeaseRotated)), None), timeout=40)
        assert fresh.username != first.username
        assert _connect(vaultdb_stack, provider) == provider.credentials().username
        provider.close()
        assert database_users_of_role(vaultdb_stack, vaultdb_role_name) == set()
    finally:
        proxy.stop()


def test_vaultdb_check_through_the_proxy_socket(
        bao_proxy: BaoProxy, vaultdb_stack: VaultDBStack, vaultdb_role_name: str) -> None:
    import subprocess
    import sys

    vaultdb_stack.create_database_role(vaultdb_role_name, default_ttl=30, max_ttl=60)
    env = vaultdb_stack.env(VAULT_ADDR=bao_proxy.unix_addr, BAO_ADDR=bao_proxy.unix_addr,
                            VAULTDB_AUTH_METHOD="proxy", VAULTDB_ROLE=vaultdb_role_name)
    done = subprocess.run([sys.executable, "-m", "vaultdb.cli", "check"], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no token: the Vault Proxy/Agent at VAULT_ADDR adds its own" in done.stdout
    assert database_users_of_role(vaultdb_stack, vaultdb_role_name) == set()
