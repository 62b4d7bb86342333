"""Every environment variable vaultdb reads, in one table (the docs are checked against it)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import ConfigurationError

__all__ = ["ENVIRONMENT", "EnvSetting", "env_bool", "env_float"]


@dataclass(frozen=True)
class EnvSetting:
    """One environment variable vaultdb reads: a row of the configuration reference."""

    name: str
    default: str
    help: str


ENVIRONMENT: tuple[EnvSetting, ...] = (
    EnvSetting("VAULT_ADDR", "(required)", "Vault/OpenBao address; BAO_ADDR is read too."),
    EnvSetting("VAULT_TOKEN", "", "A Vault token for token auth (BAO_TOKEN too); never revoked."),
    EnvSetting("VAULT_NAMESPACE", "", "Vault Enterprise namespace (BAO_NAMESPACE too)."),
    EnvSetting("VAULT_CACERT", "", "CA bundle that signed Vault's certificate (BAO_CACERT too)."),
    EnvSetting("VAULT_CAPATH", "", "Directory of CA certificates (c_rehash layout), "
               "used when VAULT_CACERT is unset (BAO_CAPATH too)."),
    EnvSetting("VAULT_SKIP_VERIFY", "false", "Skip TLS verification (tests only)."),
    EnvSetting("VAULT_CLIENT_CERT", "", "Client certificate for TLS client auth."),
    EnvSetting("VAULT_CLIENT_KEY", "", "Key of VAULT_CLIENT_CERT."),
    EnvSetting("HTTPS_PROXY", "", "Proxy for an https:// Vault (HTTP_PROXY for http://, "
               "ALL_PROXY for both); hosts in NO_PROXY bypass it."),
    EnvSetting("VAULTDB_REDIRECT_HOSTS", "", "Comma-separated host or host:port entries a "
               "307/308 from Vault may send the token and body to (besides VAULT_ADDR's own)."),
    EnvSetting("VAULTDB_ROLE", "(required)", "Database secrets engine role."),
    EnvSetting("VAULTDB_MOUNT", "database", "Mount path of the database secrets engine."),
    EnvSetting("VAULTDB_STATIC", "false", "Use a static role (static-creds/<role>)."),
    EnvSetting("VAULTDB_AUTH_METHOD", "(auto)",
               "kubernetes, jwt, approle, token, cert or proxy."),
    EnvSetting("VAULTDB_AUTH_ROLE", "", "Role of the kubernetes or jwt auth method "
               "(cert: the cert role name, optional)."),
    EnvSetting("VAULTDB_AUTH_MOUNT", "(method name)", "Mount path of the auth method."),
    EnvSetting("VAULTDB_TOKEN_PATH",
               "/var/run/secrets/kubernetes.io/serviceaccount/token",
               "Service-account token / JWT file, re-read at every login."),
    EnvSetting("VAULTDB_ROLE_ID", "", "AppRole role id."),
    EnvSetting("VAULTDB_SECRET_ID", "", "AppRole secret id."),
    EnvSetting("VAULTDB_SECRET_ID_PATH", "", "File holding the AppRole secret id."),
    EnvSetting("VAULTDB_VAULT_TOKEN_PATH", "", "File holding a Vault token (e.g. an agent sink)."),
    EnvSetting("VAULTDB_SECRET_ID_WRAPPED", "", "A response-wrapping token holding the AppRole "
               "secret id, unwrapped at login (single use)."),
    EnvSetting("VAULTDB_SECRET_ID_WRAPPED_PATH", "", "File holding a response-wrapping token "
               "for the AppRole secret id, re-read at every login."),
    EnvSetting("VAULTDB_CLIENT_CERT_PATH", "(VAULT_CLIENT_CERT)", "cert auth: the client "
               "certificate (PEM), re-read at every login."),
    EnvSetting("VAULTDB_CLIENT_KEY_PATH", "(VAULT_CLIENT_KEY)", "cert auth: the certificate's "
               "private key (PEM), re-read at every login."),
    EnvSetting("VAULTDB_DRAIN_SECONDS", "30", "How long retired credentials stay valid."),
    EnvSetting("VAULTDB_FETCH_TIMEOUT", "10", "Max seconds credentials() blocks for a fetch."),
    EnvSetting("VAULTDB_REQUEST_TIMEOUT", "5",
               "Timeout of each Vault HTTP request, its DNS lookup included."),
    EnvSetting("VAULTDB_REVOKE_TIMEOUT", "10", "Max seconds spent revoking at exit."),
    EnvSetting("VAULTDB_HANDLE_SIGTERM", "true",
               "Install the revoke-then-exit SIGTERM handler when SIGTERM is unhandled."),
)


def env_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not a number.", hint=name) from None


def env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ConfigurationError(f"{name}={raw!r} is not a boolean.", hint=f"{name}=true or false")


def environ() -> Mapping[str, str]:
    return os.environ


#: The variables that carry a login secret by value (not a path, not a choice of method):
#: ``vaultdb exec`` removes exactly these from the environment of the command it runs. A login
#: method that reads another secret from the environment adds it here.
LOGIN_SECRET_VARIABLES: tuple[str, ...] = (
    "VAULT_TOKEN", "BAO_TOKEN", "VAULTDB_ROLE_ID", "VAULTDB_SECRET_ID",
    "VAULTDB_SECRET_ID_WRAPPED")
