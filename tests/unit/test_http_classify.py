"""Pure pieces of the transport and error classification: proxies from the environment, and
how each Vault status and transport failure maps onto a typed error (and its retry flag)."""

from __future__ import annotations

import pytest

from vaultdb import errors
from vaultdb._http import HTTPStatusError, TransportError, _proxy_for, _target, _vault_errors
from vaultdb._vault import classify

PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY",
              "http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture
def clean_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_no_proxy_variables_means_direct(clean_proxy_env: pytest.MonkeyPatch) -> None:
    assert _proxy_for(_target("https://vault.internal:8200")) is None


def test_proxy_by_scheme_and_bypass(clean_proxy_env: pytest.MonkeyPatch) -> None:
    clean_proxy_env.setenv("HTTPS_PROXY", "http://proxy.corp:3128")
    clean_proxy_env.setenv("NO_PROXY", "localhost,.svc.cluster.local")
    assert _proxy_for(_target("https://vault.internal:8200")) == _target("http://proxy.corp:3128")
    assert _proxy_for(_target("http://vault.internal:8200")) is None  # only https is proxied
    assert _proxy_for(_target("https://vault.vault.svc.cluster.local:8200")) is None
    assert _proxy_for(_target("https://localhost:8200")) is None


def test_proxy_without_scheme_and_all_proxy(clean_proxy_env: pytest.MonkeyPatch) -> None:
    clean_proxy_env.setenv("ALL_PROXY", "proxy.corp:8080")
    assert _proxy_for(_target("http://vault:8200")) == _target("http://proxy.corp:8080")


def test_vault_errors_are_read_from_json_only() -> None:
    assert _vault_errors(b'{"errors": ["permission denied"]}') == ("permission denied",)
    assert _vault_errors(b"<html>502 Bad Gateway</html>") == ()
    assert _vault_errors(b'{"errors": "not a list"}') == ()
    assert _vault_errors(b"") == ()


def kind_of(exc: BaseException) -> errors.VaultDBError:
    return classify(exc, operation="do it", method="GET", path="database/creds/app")


@pytest.mark.parametrize(("status", "messages", "expected", "retryable"), [
    (503, (), errors.VaultUnavailableError, True),
    (400, ("Vault is sealed",), errors.VaultUnavailableError, True),
    (500, ("internal error",), errors.VaultUnavailableError, True),
    (502, (), errors.VaultUnavailableError, True),
    (504, (), errors.VaultUnavailableError, True),
    (429, (), errors.VaultUnavailableError, True),
    (412, (), errors.VaultUnavailableError, True),
    (400, ("lease not found",), errors.LeaseNotFoundError, None),
    (400, ("1 error occurred:\n\t* past the max TTL\n\n",), errors.LeaseNotFoundError, None),
    (403, ("permission denied",), errors.PermissionDeniedError, None),
    (401, (), errors.AuthenticationError, None),
    (404, (), errors.SecretPathError, None),
    (400, ('unknown role: "app"',), errors.SecretPathError, None),
    (400, ("something else",), errors.VaultDBError, None),
])
def test_status_classification(status: int, messages: tuple[str, ...],
                               expected: type[errors.VaultDBError], retryable: bool | None
                               ) -> None:
    error = kind_of(HTTPStatusError(status, messages))
    assert type(error) is expected
    assert error.status == status
    if retryable is not None:
        assert error.retryable is retryable


def test_a_database_vault_cannot_reach_is_named_as_such() -> None:
    said = ("1 error occurred:\n\t* unable to start transaction: failed to connect to `user=x "
            "database=app`: 127.0.0.1:1 (127.0.0.1): dial error: dial tcp 127.0.0.1:1: "
            "connect: connection refused\n\n",)  # OpenBao 2.7.2, PostgreSQL down
    error = kind_of(HTTPStatusError(500, said))
    assert type(error) is errors.VaultUnavailableError and error.retryable
    assert "could not reach the database" in str(error)
    assert "config" in (error.hint or "")
    plain = kind_of(HTTPStatusError(500, ("internal error",)))
    assert "Vault's server log" in (plain.hint or "")


def test_multierror_wrapping_is_removed() -> None:
    error = kind_of(HTTPStatusError(400, ("2 errors occurred:\n\t* a\n\t* b\n\n",)))
    assert error.vault_errors == ("a; b",)


@pytest.mark.parametrize(("kind", "sent", "expected", "request_sent"), [
    ("tls", False, errors.TLSConfigurationError, None),
    ("unreachable", False, errors.VaultUnavailableError, False),
    ("timeout", True, errors.VaultUnavailableError, True),
    ("protocol", True, errors.VaultUnavailableError, True),
])
def test_transport_classification(kind: str, sent: bool, expected: type[errors.VaultDBError],
                                  request_sent: bool | None) -> None:
    error = kind_of(TransportError(kind, "detail", sent=sent))
    assert type(error) is expected
    if request_sent is not None:
        assert isinstance(error, errors.VaultUnavailableError)
        assert error.request_sent is request_sent


def test_malformed_answer_is_unavailable_and_counted_as_sent() -> None:
    error = kind_of(ValueError("Vault's answer is not JSON"))
    assert isinstance(error, errors.VaultUnavailableError)
    assert error.request_sent is True


def test_a_refused_redirect_is_retried_and_names_the_setting() -> None:
    """A standby redirects to the old leader during an election: transient, not processed."""
    from vaultdb._http import RedirectRefusedError

    error = classify(RedirectRefusedError("307 to other.example:8200"), operation="log in",
                     method="POST", path="auth/approle/login")
    assert isinstance(error, errors.VaultUnavailableError) and error.retryable
    assert not error.request_sent
    assert "VAULTDB_REDIRECT_HOSTS" in str(error)


def test_redirect_hosts_and_unix_addresses_from_the_environment(
        clean_proxy_env: pytest.MonkeyPatch) -> None:
    from vaultdb._vault import VaultSettings

    clean_proxy_env.setenv("VAULTDB_REDIRECT_HOSTS", "vault-0.vault:8200, vault-1.vault")
    settings = VaultSettings.resolve("unix:///run/bao/proxy.sock")
    assert settings.redirect_hosts == {"vault-0.vault:8200", "vault-1.vault"}
    assert settings.addr == "unix:///run/bao/proxy.sock"


def test_a_leaderless_cluster_is_retryable_and_says_so() -> None:
    exc = HTTPStatusError(500, ("local node not active but active cluster node not found",))
    error = classify(exc, operation="renew the database lease", method="PUT",
                     path="sys/leases/renew")
    assert isinstance(error, errors.VaultUnavailableError) and error.retryable
    assert "no active node" in str(error)
