"""CertAuth against a real OpenBao TLS listener with the ``cert`` auth method.

Certificates come from a throwaway CA (``vaultdb.testing.CertificateAuthority``), as
cert-manager would issue them. The files are re-read at every login, and a wrong, expired,
mismatched or missing certificate fails with a typed error that names what to check.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from vaultdb import (
    AuthenticationError,
    CertAuth,
    ConfigurationError,
    CredentialProvider,
    RequestInfo,
    add_request_observer,
)
from vaultdb._vault import VaultClient, VaultSettings
from vaultdb.auth import auth_from_env
from vaultdb.testing import CertificateAuthority, VaultDBStack, database_users_of_role


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority("vaultdb-test-ca")


@pytest.fixture(scope="module")
def cert_role(vaultdb_tls_stack: VaultDBStack, ca: CertificateAuthority) -> str:
    vaultdb_tls_stack.create_cert_role("app", certificate=ca.pem, token_ttl=60)
    return "app"


@pytest.fixture
def requests() -> Iterator[list[RequestInfo]]:
    seen: list[RequestInfo] = []
    remove = add_request_observer(seen.append)
    yield seen
    remove()


def client(stack: VaultDBStack) -> VaultClient:
    return VaultClient(VaultSettings(addr=stack.vault_addr, verify=str(stack.vault.ca_cert),
                                     timeout=5))


def common_name(stack: VaultDBStack, vault: VaultClient) -> str:
    """The token's metadata names the certificate it logged in with."""
    assert vault.token is not None
    found = stack.root_client().auth.token.lookup(vault.token.reveal())
    return str(found["data"]["meta"]["common_name"])


def test_cert_login_gets_credentials_and_revokes_them(
        vaultdb_tls_stack: VaultDBStack, ca: CertificateAuthority, cert_role: str,
        tmp_path: Path) -> None:
    stack = vaultdb_tls_stack
    cert, key = ca.issue("app-1", tmp_path / "tls.crt", tmp_path / "tls.key")
    stack.create_database_role("certapp", default_ttl=30, max_ttl=60)
    provider = CredentialProvider("certapp", auth=CertAuth(str(cert), str(key), name=cert_role),
                                  vault_addr=stack.vault_addr, verify=str(stack.vault.ca_cert),
                                  handle_sigterm=False)
    try:
        creds = provider.credentials()
        with psycopg.connect(host=stack.postgres.host, port=stack.postgres.port,
                             dbname=stack.postgres.database, user=creds.username,
                             password=creds.password, connect_timeout=5) as conn:
            assert conn.execute("SELECT session_user").fetchone() == (creds.username,)
        assert creds.username.startswith("v-cert-")
    finally:
        provider.close()
    assert database_users_of_role(stack, "certapp") == set()


def test_rotated_files_are_read_at_the_next_login(
        vaultdb_tls_stack: VaultDBStack, ca: CertificateAuthority, cert_role: str,
        tmp_path: Path) -> None:
    cert, key = ca.issue("app-1", tmp_path / "tls.crt", tmp_path / "tls.key")
    auth = CertAuth(str(cert), str(key), name=cert_role)
    vault = client(vaultdb_tls_stack)
    vault.login(auth)
    assert common_name(vaultdb_tls_stack, vault) == "app-1"
    ca.issue("app-2", cert, key)  # cert-manager renews the pair in place
    vault.login(auth)
    assert common_name(vaultdb_tls_stack, vault) == "app-2"


def test_a_certificate_vault_does_not_trust_is_an_authentication_error(
        vaultdb_tls_stack: VaultDBStack, cert_role: str, tmp_path: Path) -> None:
    stranger = CertificateAuthority("someone-else")
    cert, key = stranger.issue("app", tmp_path / "tls.crt", tmp_path / "tls.key")
    with pytest.raises(AuthenticationError) as info:
        client(vaultdb_tls_stack).login(CertAuth(str(cert), str(key), name=cert_role))
    text = str(info.value)
    assert "auth/cert/certs/app" in text and "trusts the certificate" in text
    assert info.value.__cause__ is None and info.value.__context__ is None
    assert "PRIVATE KEY" not in text


def test_an_expired_certificate_fails_before_any_request(
        vaultdb_tls_stack: VaultDBStack, ca: CertificateAuthority, cert_role: str,
        tmp_path: Path, requests: list[RequestInfo]) -> None:
    cert, key = ca.issue("app", tmp_path / "tls.crt", tmp_path / "tls.key",
                         valid_from=-7200, valid_for=3600)
    with pytest.raises(ConfigurationError, match="expired at") as info:
        client(vaultdb_tls_stack).login(CertAuth(str(cert), str(key), name=cert_role))
    assert "cert-manager" in str(info.value)
    assert requests == []


def test_a_certificate_not_yet_valid_is_a_configuration_error(
        vaultdb_tls_stack: VaultDBStack, ca: CertificateAuthority, tmp_path: Path) -> None:
    cert, key = ca.issue("app", tmp_path / "tls.crt", tmp_path / "tls.key", valid_from=3600)
    with pytest.raises(ConfigurationError, match="not valid before"):
        client(vaultdb_tls_stack).login(CertAuth(str(cert), str(key)))


def test_missing_files_and_a_mismatched_key(
        vaultdb_tls_stack: VaultDBStack, ca: CertificateAuthority, tmp_path: Path) -> None:
    vault = client(vaultdb_tls_stack)
    with pytest.raises(ConfigurationError, match="does not exist") as info:
        vault.login(CertAuth(str(tmp_path / "nope.crt"), str(tmp_path / "nope.key")))
    assert "VAULTDB_CLIENT_CERT_PATH" in str(info.value)
    cert, _ = ca.issue("a", tmp_path / "a.crt", tmp_path / "a.key")
    _, other_key = ca.issue("b", tmp_path / "b.crt", tmp_path / "b.key")
    with pytest.raises(ConfigurationError, match="cannot be used together") as info:
        vault.login(CertAuth(str(cert), str(other_key)))
    assert "PRIVATE KEY" not in str(info.value)


def test_cert_auth_needs_https(tmp_path: Path, ca: CertificateAuthority) -> None:
    cert, key = ca.issue("a", tmp_path / "a.crt", tmp_path / "a.key")
    vault = VaultClient(VaultSettings(addr="http://127.0.0.1:1", timeout=1))
    with pytest.raises(ConfigurationError, match="needs TLS"):
        vault.login(CertAuth(str(cert), str(key)))


def test_cert_from_the_environment() -> None:
    auth = auth_from_env({"VAULTDB_AUTH_METHOD": "cert", "VAULTDB_CLIENT_CERT_PATH": "/c.pem",
                          "VAULTDB_CLIENT_KEY_PATH": "/k.pem", "VAULTDB_AUTH_ROLE": "app"})
    assert auth == CertAuth("/c.pem", "/k.pem", name="app")
    fallback = auth_from_env({"VAULTDB_AUTH_METHOD": "cert", "VAULT_CLIENT_CERT": "/c.pem"})
    assert fallback == CertAuth("/c.pem")
    with pytest.raises(ConfigurationError, match="VAULTDB_CLIENT_CERT_PATH"):
        auth_from_env({"VAULTDB_AUTH_METHOD": "cert"})
