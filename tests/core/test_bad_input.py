"""Bad input fails fast with a typed error that names what to check, and leaks no secret."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from vaultdb import (
    AuthenticationError,
    ConfigurationError,
    CredentialProvider,
    KubernetesAuth,
    PermissionDeniedError,
    SecretPathError,
    TokenAuth,
    VaultDBError,
    VaultUnavailableError,
)
from vaultdb.testing import VaultDBStack


def no_secret_in(exc: BaseException, *secrets: str) -> None:
    text = f"{exc!s} {exc!r} {exc.__cause__!s}"
    for secret in secrets:
        assert secret not in text


def provider_for(stack: VaultDBStack, role: str, **kwargs) -> CredentialProvider:
    kwargs.setdefault("vault_addr", stack.vault_addr)
    kwargs.setdefault("fetch_timeout", 3)
    return CredentialProvider(role, handle_sigterm=False, **kwargs)


def test_wrong_database_role(vaultdb_stack):
    token = vaultdb_stack.create_token()
    with provider_for(vaultdb_stack, "no-such-role", auth=TokenAuth(token=token)) as p:
        with pytest.raises(SecretPathError) as info:
            p.credentials()
    assert "no-such-role" in str(info.value)
    assert "database/creds/no-such-role" in str(info.value)
    assert not info.value.retryable
    no_secret_in(info.value, token)


def test_wrong_secrets_mount(vaultdb_stack):
    token = vaultdb_stack.create_token()
    with provider_for(vaultdb_stack, "app", mount="dbs", auth=TokenAuth(token=token)) as p:
        # The policy is checked before routing, so a wrong mount looks like a denial; the
        # message names both the mount and the policy to check.
        with pytest.raises((PermissionDeniedError, SecretPathError)) as info:
            p.credentials()
    assert "'dbs'" in str(info.value)
    assert "dbs/creds/app" in str(info.value)
    no_secret_in(info.value, token)


def test_missing_token_file(vaultdb_stack, tmp_path: Path):
    auth = KubernetesAuth(role="app", token_path=str(tmp_path / "nope"))
    with provider_for(vaultdb_stack, "app", auth=auth) as p:
        with pytest.raises(ConfigurationError) as info:
            p.credentials()
    assert str(tmp_path / "nope") in str(info.value)
    assert "token" in (info.value.hint or "")


def test_expired_service_account_token(vaultdb_stack, tmp_path: Path):
    path = vaultdb_stack.write_service_account_token(tmp_path / "token", ttl=0)
    with provider_for(vaultdb_stack, "app", auth=KubernetesAuth("app", token_path=str(path))) as p:
        with pytest.raises(ConfigurationError, match="expired") as info:
            p.credentials()
    no_secret_in(info.value, path.read_text())


def test_wrong_kubernetes_auth_role(vaultdb_stack, vaultdb_role_name, tmp_path: Path):
    path = vaultdb_stack.write_service_account_token(tmp_path / "token")
    auth = KubernetesAuth(role="not-a-role", token_path=str(path))
    with provider_for(vaultdb_stack, vaultdb_role_name, auth=auth) as p:
        with pytest.raises(AuthenticationError) as info:
            p.credentials()
    assert "not-a-role" in str(info.value)
    assert "auth/kubernetes" in str(info.value)
    no_secret_in(info.value, path.read_text())


def test_service_account_not_bound_to_the_role(vaultdb_stack, vaultdb_role_name, tmp_path: Path):
    vaultdb_stack.create_kubernetes_role(vaultdb_role_name, service_account="someone-else")
    path = vaultdb_stack.write_service_account_token(tmp_path / "token")
    auth = KubernetesAuth(role=vaultdb_role_name, token_path=str(path))
    with provider_for(vaultdb_stack, vaultdb_role_name, auth=auth) as p:
        with pytest.raises(AuthenticationError) as info:
            p.credentials()
    assert "service account" in str(info.value)


def test_permission_denied_names_the_capability(vaultdb_stack, vaultdb_role_name):
    vaultdb_stack.create_database_role(vaultdb_role_name)
    token = vaultdb_stack.create_token(policies=("default",))
    with provider_for(vaultdb_stack, vaultdb_role_name, auth=TokenAuth(token=token)) as p:
        with pytest.raises(PermissionDeniedError) as info:
            p.credentials()
    assert "'read'" in str(info.value)
    assert f"database/creds/{vaultdb_role_name}" in str(info.value)
    assert info.value.status == 403
    no_secret_in(info.value, token)


def test_invalid_vault_token(vaultdb_stack):
    with provider_for(vaultdb_stack, "app", auth=TokenAuth(token="s.not-a-real-token")) as p:
        with pytest.raises(AuthenticationError) as info:
            p.credentials()
    no_secret_in(info.value, "s.not-a-real-token")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_vault_raises_instead_of_hanging():
    addr = f"http://127.0.0.1:{_closed_port()}"
    with CredentialProvider("app", auth=TokenAuth(token="t"), vault_addr=addr,
                            fetch_timeout=2, request_timeout=1, handle_sigterm=False) as p:
        with pytest.raises(VaultUnavailableError) as info:
            p.credentials()
    assert info.value.retryable
    assert "VAULT_ADDR" in str(info.value)


def test_frozen_vault_times_out_instead_of_hanging(vaultdb_stack):
    token = vaultdb_stack.create_token()
    vaultdb_stack.pause_vault()
    try:
        with provider_for(vaultdb_stack, "app", auth=TokenAuth(token=token),
                          request_timeout=0.5, fetch_timeout=1.5) as p:
            with pytest.raises(VaultUnavailableError):
                p.credentials()
    finally:
        vaultdb_stack.resume_vault()


def test_sealed_vault(vaultdb_stack, vaultdb_role_name):
    token = vaultdb_stack.create_token()
    vaultdb_stack.root_client().sys.seal()
    try:
        with provider_for(vaultdb_stack, "app", auth=TokenAuth(token=token)) as p:
            with pytest.raises(VaultUnavailableError, match="sealed"):
                p.credentials()
    finally:
        vaultdb_stack.restart_vault(reconfigure=True)


def test_database_vault_cannot_reach(vaultdb_stack, vaultdb_role_name):
    """Vault is fine but the database behind a connection is down: the error says so and
    names the connection to check, not Vault's health."""
    root = vaultdb_stack.root_client()
    root.write(f"database/config/{vaultdb_role_name}", plugin_name="postgresql-database-plugin",
               connection_url=f"postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:"
               f"{_closed_port()}/app?sslmode=disable", username="vault_admin",
               password="s3cret-admin", allowed_roles="*", verify_connection=False)
    root.write(f"database/roles/{vaultdb_role_name}", db_name=vaultdb_role_name,
               creation_statements=['CREATE ROLE "{{name}}" LOGIN;'], default_ttl="60s")
    token = vaultdb_stack.create_token()
    with provider_for(vaultdb_stack, vaultdb_role_name, auth=TokenAuth(token=token)) as p:
        with pytest.raises(VaultUnavailableError, match="could not reach the database") as info:
            p.credentials()
    assert "config" in (info.value.hint or "")
    no_secret_in(info.value, token, "s3cret-admin")


def test_missing_vault_address(monkeypatch):
    monkeypatch.delenv("VAULT_ADDR", raising=False)
    monkeypatch.delenv("BAO_ADDR", raising=False)
    with pytest.raises(ConfigurationError, match="VAULT_ADDR"):
        CredentialProvider("app", auth=TokenAuth(token="t"))


def test_address_without_scheme():
    with pytest.raises(ConfigurationError, match="scheme"):
        CredentialProvider("app", auth=TokenAuth(token="t"), vault_addr="vault:8200")


def test_no_auth_method_in_the_environment(monkeypatch):
    for name in ("VAULT_TOKEN", "BAO_TOKEN", "VAULTDB_AUTH_METHOD", "VAULTDB_ROLE_ID",
                 "VAULTDB_AUTH_ROLE", "VAULTDB_VAULT_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigurationError, match="login method"):
        CredentialProvider("app", vault_addr="http://127.0.0.1:1")


def test_from_env_requires_a_role(monkeypatch):
    with pytest.raises(ConfigurationError, match="VAULTDB_ROLE"):
        CredentialProvider.from_env({"VAULT_ADDR": "http://127.0.0.1:1", "VAULT_TOKEN": "t"})


def test_from_env_builds_a_working_provider(vaultdb_stack, vaultdb_role_name, tmp_path, caplog):
    vaultdb_stack.create_database_role(vaultdb_role_name, default_ttl=30, max_ttl=60)
    vaultdb_stack.create_kubernetes_role(vaultdb_role_name)
    path = vaultdb_stack.write_service_account_token(tmp_path / "token")
    env = {"VAULT_ADDR": vaultdb_stack.vault_addr, "VAULTDB_ROLE": vaultdb_role_name,
           "VAULTDB_AUTH_ROLE": vaultdb_role_name, "VAULTDB_TOKEN_PATH": str(path),
           "VAULTDB_DRAIN_SECONDS": "2", "VAULTDB_HANDLE_SIGTERM": "false"}
    caplog.set_level("INFO", logger="vaultdb")
    with CredentialProvider.from_env(env) as p:
        assert p.credentials().username.startswith("v-")
    assert "kubernetes auth" in caplog.text  # the picked method is logged


def test_bad_numbers_in_the_environment():
    with pytest.raises(ConfigurationError, match="VAULTDB_DRAIN_SECONDS"):
        CredentialProvider.from_env({"VAULT_ADDR": "http://127.0.0.1:1", "VAULT_TOKEN": "t",
                                     "VAULTDB_ROLE": "app", "VAULTDB_DRAIN_SECONDS": "soon"})


def test_every_error_is_a_vaultdb_error():
    for cls in (AuthenticationError, ConfigurationError, PermissionDeniedError,
                SecretPathError, VaultUnavailableError):
        assert issubclass(cls, VaultDBError)
