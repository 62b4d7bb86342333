"""The settings table: one reader of the environment, typed errors naming what to fix."""

from __future__ import annotations

import pytest

from vaultdb import AppRoleAuth, CredentialProvider, TokenAuth
from vaultdb._vault import VaultSettings
from vaultdb.errors import ConfigurationError
from vaultdb.settings import SETTINGS, env_from_params, url_params

#: What a process environment might hold; a mapping handed to from_env must win over all of it.
PROCESS_ENV = {
    "VAULT_ADDR": "http://process.invalid:1", "VAULT_NAMESPACE": "process-ns",
    "VAULT_SKIP_VERIFY": "true", "VAULTDB_REQUEST_TIMEOUT": "99", "VAULT_TOKEN": "process-tok",
    "VAULT_CLIENT_CERT": "/process/cert", "VAULT_CLIENT_KEY": "/process/key",
    "VAULTDB_ROLE": "process-role", "VAULTDB_MOUNT": "process-mount",
    "VAULTDB_AUTH_METHOD": "token", "VAULTDB_DRAIN_SECONDS": "77",
}


@pytest.fixture
def process_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in PROCESS_ENV.items():
        monkeypatch.setenv(name, value)


def test_from_env_uses_the_given_mapping_for_every_variable(process_env: None) -> None:
    env = {"VAULT_ADDR": "https://mapping.invalid:8200", "VAULTDB_ROLE": "app-rw",
           "VAULTDB_ROLE_ID": "rid", "VAULTDB_SECRET_ID": "sid",
           "VAULTDB_REQUEST_TIMEOUT": "2.5"}
    provider = CredentialProvider.from_env(env, handle_sigterm=False)
    settings = provider._engine.session.vault.settings
    assert settings.addr == "https://mapping.invalid:8200"
    assert settings.namespace is None          # not process-ns
    assert settings.verify is True             # not VAULT_SKIP_VERIFY from the process
    assert settings.client_cert is None        # not the process's client certificate
    assert settings.timeout == 2.5
    assert provider.role == "app-rw" and provider.mount == "database"
    assert isinstance(provider.auth, AppRoleAuth)   # not token auth from the process


def test_token_auth_from_a_mapping_never_falls_back_to_the_process(process_env: None) -> None:
    env = {"VAULT_ADDR": "http://127.0.0.1:1", "VAULTDB_ROLE": "r",
           "VAULTDB_AUTH_METHOD": "token"}
    with pytest.raises(ConfigurationError, match="token auth needs a token"):
        CredentialProvider.from_env(env, handle_sigterm=False)
    auth = CredentialProvider.from_env({**env, "BAO_TOKEN": "mine"}, handle_sigterm=False).auth
    assert isinstance(auth, TokenAuth) and auth.read_token() == "mine"


def test_without_a_mapping_the_process_environment_is_read(process_env: None) -> None:
    provider = CredentialProvider.from_env(handle_sigterm=False)
    assert provider._engine.session.vault.settings.namespace == "process-ns"
    assert provider._engine.session.vault.settings.client_cert == ("/process/cert", "/process/key")
    assert provider.role == "process-role" and provider.mount == "process-mount"


@pytest.mark.parametrize("value", ["abc", "0", "-1", "nan", "inf", ""])
@pytest.mark.parametrize("name", ["VAULTDB_REQUEST_TIMEOUT", "VAULTDB_FETCH_TIMEOUT",
                                  "VAULTDB_REVOKE_TIMEOUT"])
def test_invalid_numbers_are_a_configuration_error_naming_the_variable(
        name: str, value: str) -> None:
    env = {"VAULT_ADDR": "http://127.0.0.1:1", "VAULTDB_ROLE": "r", "VAULT_TOKEN": "t",
           name: value}
    if value == "":  # unset: the default
        CredentialProvider.from_env(env, handle_sigterm=False)
        return
    with pytest.raises(ConfigurationError) as caught:
        CredentialProvider.from_env(env, handle_sigterm=False)
    assert name in str(caught.value) and name in (caught.value.hint or "")


def test_drain_seconds_may_be_zero_but_not_negative() -> None:
    env = {"VAULT_ADDR": "http://127.0.0.1:1", "VAULTDB_ROLE": "r", "VAULT_TOKEN": "t"}
    CredentialProvider.from_env({**env, "VAULTDB_DRAIN_SECONDS": "0"}, handle_sigterm=False)
    with pytest.raises(ConfigurationError, match="VAULTDB_DRAIN_SECONDS"):
        CredentialProvider.from_env({**env, "VAULTDB_DRAIN_SECONDS": "-3"}, handle_sigterm=False)


def test_the_process_environment_is_checked_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAULTDB_REQUEST_TIMEOUT", "abc")
    with pytest.raises(ConfigurationError, match="VAULTDB_REQUEST_TIMEOUT"):
        VaultSettings.resolve("http://127.0.0.1:1")
    monkeypatch.delenv("VAULTDB_REQUEST_TIMEOUT")
    with pytest.raises(ConfigurationError, match="request_timeout"):
        VaultSettings.resolve("http://127.0.0.1:1", timeout=-1)


def test_resolve_takes_an_env_mapping(process_env: None) -> None:
    resolved = VaultSettings.resolve(env={"BAO_ADDR": "http://bao.invalid:8200"})
    assert resolved.addr == "http://bao.invalid:8200" and resolved.namespace is None


def test_url_parameters_override_the_environment_and_name_themselves() -> None:
    env = {"VAULTDB_ROLE": "from-env", "BAO_ADDR": "http://env.invalid:1"}
    merged = env_from_params({"vaultdb_role": "from-url", "vaultdb_vault_addr": "http://u:2",
                              "sslmode": "disable"}, env)
    assert merged["VAULTDB_ROLE"] == "from-url" and merged["VAULT_ADDR"] == "http://u:2"
    assert "BAO_ADDR" not in merged and "sslmode" not in merged
    with pytest.raises(ConfigurationError, match="URL parameter vaultdb_request_timeout"):
        env_from_params({"vaultdb_request_timeout": "0"}, env)
    with pytest.raises(ConfigurationError, match="Unknown URL parameter vaultdb_rol"):
        env_from_params({"vaultdb_rol": "x"}, env)


@pytest.mark.parametrize("param", ["vaultdb_token", "vaultdb_secret_id"])
def test_secrets_are_refused_in_a_url_without_echoing_them(param: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        env_from_params({param: "s3cr3t-value"}, {})
    assert "s3cr3t-value" not in str(caught.value) + str(caught.value.hint)


def test_every_provider_setting_has_a_url_parameter_except_secrets_and_proxies() -> None:
    without = {s.name for s in SETTINGS if s.url_param is None}
    assert without == {"VAULT_TOKEN", "VAULTDB_SECRET_ID", "VAULTDB_SECRET_ID_WRAPPED",
                       "HTTPS_PROXY"}
    assert set(url_params()) == {s.url_param for s in SETTINGS} - {None}


def test_django_vault_keys_come_from_the_table_and_are_checked_by_it() -> None:
    from vaultdb.integrations.django.registry import PROVIDER_KEYS, provider_options

    keywords = {s.keyword for s in SETTINGS if s.keyword and "." not in s.keyword}
    assert keywords <= PROVIDER_KEYS
    options = provider_options({"request_timeout": "2.5", "static": "yes", "role": "r"}, {})
    assert options == {"request_timeout": 2.5, "static": True, "role": "r"}
    with pytest.raises(ConfigurationError, match=r"VAULT\['request_timeout'\]"):
        provider_options({"request_timeout": 0}, {})
