"""Every setting vaultdb reads from the environment, in one table, and the one reader of it.

The table drives :meth:`CredentialProvider.from_env`, how :class:`VaultSettings` fills its gaps,
the ``vaultdb_<param>`` query parameters of the SQLAlchemy URL plugin, and the configuration
reference (``tests/unit/test_docs_settings.py`` checks the docs against it). Nothing else in
``vaultdb`` reads ``os.environ`` for a setting: a mapping handed to ``from_env(env)`` is used
for every variable.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .auth import DEFAULT_SA_TOKEN_PATH
from .errors import ConfigurationError

__all__ = ["ENVIRONMENT", "LOGIN_SECRET_VARIABLES", "SETTINGS", "EnvSetting", "Setting",
           "auth_from_env", "env_bool",
           "env_float", "env_from_params", "environ", "provider_kwargs", "url_params",
           "vault_connection"]

logger = logging.getLogger("vaultdb.settings")

URL_PREFIX = "vaultdb_"


@dataclass(frozen=True)
class Setting:
    """One setting: a row of the configuration reference.

    ``kind`` is ``str``, ``bool``, ``seconds`` (a finite number > 0) or ``seconds0`` (>= 0).
    ``keyword`` is the :class:`~vaultdb.CredentialProvider` argument it feeds (``auth.<x>``
    for a field of the login method, ``None`` for settings read elsewhere). ``param`` is its
    URL query parameter without the ``vaultdb_`` prefix; ``None`` where a URL is no place for
    it (secrets, proxies).
    """

    name: str
    default: str
    help: str
    kind: str = "str"
    keyword: str | None = None
    param: str | None = None
    aliases: tuple[str, ...] = ()

    @property
    def url_param(self) -> str | None:
        return None if self.param is None else URL_PREFIX + self.param


#: Kept for callers of the first version of this module.
EnvSetting = Setting

SETTINGS: tuple[Setting, ...] = (
    Setting("VAULT_ADDR", "(required)", "Vault/OpenBao address (`https://`, `http://`, or "
            "`unix:///path/to/socket` for a local Vault Proxy or listener); BAO_ADDR is read "
            "too.",
            keyword="vault_addr", param="vault_addr", aliases=("BAO_ADDR",)),
    Setting("VAULT_TOKEN", "", "A Vault token for token auth (BAO_TOKEN too); never revoked.",
            keyword="auth.token", aliases=("BAO_TOKEN",)),
    Setting("VAULT_NAMESPACE", "", "Vault Enterprise namespace (BAO_NAMESPACE too).",
            keyword="namespace", param="namespace", aliases=("BAO_NAMESPACE",)),
    Setting("VAULT_CACERT", "", "CA bundle that signed Vault's certificate (BAO_CACERT too).",
            keyword="verify", param="cacert", aliases=("BAO_CACERT",)),
    Setting("VAULT_CAPATH", "", "Directory of CA certificates (c_rehash layout), "
            "used when VAULT_CACERT is unset (BAO_CAPATH too).",
            keyword="verify", param="capath", aliases=("BAO_CAPATH",)),
    Setting("VAULT_SKIP_VERIFY", "false", "Skip TLS verification (tests only).", kind="bool",
            keyword="verify", param="skip_verify", aliases=("BAO_SKIP_VERIFY",)),
    Setting("VAULT_CLIENT_CERT", "", "Client certificate for TLS client auth.",
            param="client_cert", aliases=("BAO_CLIENT_CERT",)),
    Setting("VAULT_CLIENT_KEY", "", "Key of VAULT_CLIENT_CERT.",
            param="client_key", aliases=("BAO_CLIENT_KEY",)),
    Setting("HTTPS_PROXY", "", "Proxy for an https:// Vault (HTTP_PROXY for http://, "
            "ALL_PROXY for both); hosts in NO_PROXY bypass it. An `https://` proxy URL is "
            "spoken to in TLS."),
    Setting("VAULTDB_REDIRECT_HOSTS", "", "Comma-separated `host` or `host:port` entries a "
            "307/308 redirect from Vault may go to with the token and request body (besides "
            "VAULT_ADDR's own scheme, host and port).",
            param="redirect_hosts"),
    Setting("VAULTDB_ROLE", "(required)", "Database secrets engine role.",
            keyword="role", param="role"),
    Setting("VAULTDB_MOUNT", "database", "Mount path of the database secrets engine.",
            keyword="mount", param="mount"),
    Setting("VAULTDB_STATIC", "false", "Use a static role (static-creds/<role>).", kind="bool",
            keyword="static", param="static"),
    Setting("VAULTDB_AUTH_METHOD", "(auto)", "kubernetes, jwt, approle, token, cert or proxy.",
            keyword="auth.method", param="auth_method"),
    Setting("VAULTDB_AUTH_ROLE", "", "Role of the kubernetes or jwt auth method "
            "(cert: the cert role name, optional).",
            keyword="auth.role", param="auth_role"),
    Setting("VAULTDB_AUTH_MOUNT", "(method name)", "Mount path of the auth method.",
            keyword="auth.mount", param="auth_mount"),
    Setting("VAULTDB_TOKEN_PATH", DEFAULT_SA_TOKEN_PATH,
            "Service-account token / JWT file, re-read at every login.",
            keyword="auth.token_path", param="token_path"),
    Setting("VAULTDB_ROLE_ID", "", "AppRole role id.", keyword="auth.role_id", param="role_id"),
    Setting("VAULTDB_SECRET_ID", "", "AppRole secret id.", keyword="auth.secret_id"),
    Setting("VAULTDB_SECRET_ID_PATH", "", "File holding the AppRole secret id.",
            keyword="auth.secret_id_path", param="secret_id_path"),
    Setting("VAULTDB_VAULT_TOKEN_PATH", "", "File holding a Vault token (e.g. an agent sink).",
            keyword="auth.token_path", param="vault_token_path"),
    Setting("VAULTDB_SECRET_ID_WRAPPED", "", "A response-wrapping token holding the AppRole "
            "secret id, unwrapped at login (single use).", keyword="auth.wrapped_secret_id"),
    Setting("VAULTDB_SECRET_ID_WRAPPED_PATH", "", "File holding a response-wrapping token "
            "for the AppRole secret id, re-read at every login.",
            keyword="auth.wrapped_secret_id_path", param="secret_id_wrapped_path"),
    Setting("VAULTDB_CLIENT_CERT_PATH", "(VAULT_CLIENT_CERT)", "cert auth: the client "
            "certificate (PEM), re-read at every login.",
            keyword="auth.cert_path", param="client_cert_path"),
    Setting("VAULTDB_CLIENT_KEY_PATH", "(VAULT_CLIENT_KEY)", "cert auth: the certificate's "
            "private key (PEM), re-read at every login.",
            keyword="auth.key_path", param="client_key_path"),
    Setting("VAULTDB_DRAIN_SECONDS", "30", "How long retired credentials stay valid.",
            kind="seconds0", keyword="drain_seconds", param="drain_seconds"),
    Setting("VAULTDB_FETCH_TIMEOUT", "10", "Max seconds credentials() blocks for a fetch.",
            kind="seconds", keyword="fetch_timeout", param="fetch_timeout"),
    Setting("VAULTDB_REQUEST_TIMEOUT", "5",
            "Timeout of each Vault HTTP request, its DNS lookup included.",
            kind="seconds", keyword="request_timeout", param="request_timeout"),
    Setting("VAULTDB_REVOKE_TIMEOUT", "10", "Max seconds spent revoking at exit.",
            kind="seconds", keyword="revoke_timeout", param="revoke_timeout"),
    Setting("VAULTDB_HANDLE_SIGTERM", "true",
            "Install the revoke-then-exit SIGTERM handler when SIGTERM is unhandled.",
            kind="bool", keyword="handle_sigterm", param="handle_sigterm"),
    Setting("VAULTDB_LOGIN_SESSION", "", "Providers built from settings (URL plugin, Django, "
            "asyncpg helper) with matching login settings share one login session; a name "
            "here keeps providers with different names apart.", param="login_session"),
    Setting("VAULTDB_ROTATE_AFTER", "", "Rotate dynamic credentials once they are this many "
            "seconds old, even when Vault would renew them further (unset: only before "
            "max_ttl or the login token's end).",
            kind="seconds", keyword="rotate_after", param="rotate_after"),
    Setting("VAULTDB_SET_ROLE", "", "SQLAlchemy URL plugin: SET ROLE to this role on each new "
            "connection (so objects are owned by a stable role).", param="set_role"),
)

#: The name the docs test and older callers use.
ENVIRONMENT = SETTINGS
_BY_NAME = {s.name: s for s in SETTINGS}
_BY_PARAM = {s.url_param: s for s in SETTINGS if s.url_param is not None}

# The mapping from_env() was handed, while it builds its provider: what fills the gaps the
# constructor leaves (VaultSettings.resolve) reads it instead of os.environ.
_scoped_env: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar(
    "vaultdb_scoped_env", default=None)


def environ() -> Mapping[str, str]:
    """The environment settings are read from: ``from_env``'s mapping while it runs."""
    scoped = _scoped_env.get()
    return os.environ if scoped is None else scoped


@contextlib.contextmanager
def scoped(env: Mapping[str, str]) -> Iterator[None]:
    """Make :func:`environ` return ``env`` on this thread/task for the ``with`` block."""
    token = _scoped_env.set(env)
    try:
        yield
    finally:
        _scoped_env.reset(token)


def raw(env: Mapping[str, str], name: str) -> str | None:
    """The value of ``name`` (or its ``BAO_*`` spelling); ``None`` when unset or empty."""
    setting = _BY_NAME.get(name)
    for key in (name, *(setting.aliases if setting else ())):
        value = env.get(key)
        if value:
            return value
    return None


def parse(setting: Setting, value: str, label: str | None = None) -> Any:
    """``value`` as ``setting.kind``; a :class:`ConfigurationError` naming ``label`` if bad."""
    label = label or setting.name
    if setting.kind == "bool":
        word = value.strip().lower()
        if word in {"1", "true", "yes", "on"}:
            return True
        if word in {"0", "false", "no", "off"}:
            return False
        raise ConfigurationError(f"{label}={value!r} is not a boolean.",
                                 hint=f"{label}=true or false")
    if setting.kind in ("seconds", "seconds0"):
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        low_ok = number >= 0 if setting.kind == "seconds0" else number > 0
        if not (math.isfinite(number) and low_ok):
            bound = "0 or more" if setting.kind == "seconds0" else "more than 0"
            raise ConfigurationError(f"{label}={value!r} is not a number of seconds.",
                                     hint=f"set {label} to a number of seconds, {bound}")
        return number
    return value


def get(env: Mapping[str, str], name: str, default: Any = None) -> Any:
    """The parsed value of setting ``name`` in ``env``, or ``default`` when unset."""
    value = raw(env, name)
    return default if value is None else parse(_BY_NAME[name], value)


def env_float(env: Mapping[str, str], name: str, default: float) -> float:
    value = raw(env, name)
    if value is None:
        return default
    setting = _BY_NAME.get(name) or Setting(name, "", "", kind="seconds0")
    return float(parse(setting, value))


def env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    value = raw(env, name)
    if value is None:
        return default
    return bool(parse(_BY_NAME.get(name) or Setting(name, "", "", kind="bool"), value))


def vault_connection(env: Mapping[str, str], *, verify_given: bool = False
                     ) -> dict[str, Any]:
    """How to reach Vault, from ``env``: addr, namespace, verify, client_cert, timeout,
    redirect_hosts.

    Values are ``None`` where ``env`` says nothing (``verify`` is then ``True``; the CA
    variables are not looked at when the caller has its own ``verify``).
    """
    verify: bool | str = True
    cacert = None if verify_given else raw(env, "VAULT_CACERT") or raw(env, "VAULT_CAPATH")
    if not verify_given and get(env, "VAULT_SKIP_VERIFY", False):
        verify = False
    elif cacert:
        if not os.path.exists(cacert):
            raise ConfigurationError(
                f"CA certificate file {cacert!r} does not exist.",
                hint="VAULT_CACERT must point at a readable PEM file "
                "(VAULT_CAPATH at a directory of them)")
        verify = cacert
    cert, key = raw(env, "VAULT_CLIENT_CERT"), raw(env, "VAULT_CLIENT_KEY")
    redirects = raw(env, "VAULTDB_REDIRECT_HOSTS") or ""
    return {
        "redirect_hosts": frozenset(h.strip() for h in redirects.split(",") if h.strip()),
        "addr": raw(env, "VAULT_ADDR"),
        "namespace": raw(env, "VAULT_NAMESPACE"),
        "verify": verify,
        "client_cert": (cert, key) if cert and key else None,
        "timeout": get(env, "VAULTDB_REQUEST_TIMEOUT"),
    }


def provider_kwargs(env: Mapping[str, str], overrides: Mapping[str, Any] | None = None
                    ) -> dict[str, Any]:
    """Keyword arguments of :class:`~vaultdb.CredentialProvider` from ``env``.

    ``overrides`` win over the environment; the role is required from one or the other.
    """
    overrides = dict(overrides or {})
    vault = vault_connection(env)
    kwargs: dict[str, Any] = {
        "vault_addr": vault["addr"],
        "namespace": vault["namespace"],
        "verify": vault["verify"],
        "mount": get(env, "VAULTDB_MOUNT", "database"),
        "static": get(env, "VAULTDB_STATIC", False),
        "drain_seconds": get(env, "VAULTDB_DRAIN_SECONDS", 30.0),
        "fetch_timeout": get(env, "VAULTDB_FETCH_TIMEOUT", 10.0),
        "request_timeout": get(env, "VAULTDB_REQUEST_TIMEOUT", 5.0),
        "revoke_timeout": get(env, "VAULTDB_REVOKE_TIMEOUT", 10.0),
        "handle_sigterm": get(env, "VAULTDB_HANDLE_SIGTERM", True),
        "rotate_after": get(env, "VAULTDB_ROTATE_AFTER", None),
    }
    kwargs.update(overrides)
    kwargs["role"] = kwargs.get("role") or raw(env, "VAULTDB_ROLE")
    if not kwargs["role"]:
        raise ConfigurationError("No database role is configured.",
                                 hint="set VAULTDB_ROLE (the role in <mount>/creds/<role>)")
    if kwargs.get("auth") is None:
        kwargs["auth"] = auth_from_env(env)
    return kwargs


def auth_from_env(env: Mapping[str, str] | None = None) -> Any:
    """Pick the login method from ``env`` (default: :func:`environ`), and log which.

    ``VAULTDB_AUTH_METHOD`` (kubernetes, jwt, approle, token, cert, proxy) wins; otherwise a
    token in
    ``VAULT_TOKEN`` / ``VAULTDB_VAULT_TOKEN_PATH``, then an AppRole role id, then the pod's
    service-account token file with ``VAULTDB_AUTH_ROLE``.
    """
    from .auth import (
        AppRoleAuth,
        AuthMethod,
        CertAuth,
        JWTAuth,
        KubernetesAuth,
        ProxyAuth,
        TokenAuth,
    )

    e = environ() if env is None else env
    method = (raw(e, "VAULTDB_AUTH_METHOD") or "").strip().lower()
    role = raw(e, "VAULTDB_AUTH_ROLE")
    mount = raw(e, "VAULTDB_AUTH_MOUNT")
    token_path = raw(e, "VAULTDB_TOKEN_PATH")
    vault_token = raw(e, "VAULT_TOKEN")
    if not method:
        if vault_token or raw(e, "VAULTDB_VAULT_TOKEN_PATH"):
            method = "token"
        elif raw(e, "VAULTDB_ROLE_ID"):
            method = "approle"
        elif role and os.path.exists(token_path or DEFAULT_SA_TOKEN_PATH):
            method = "kubernetes"
        else:
            raise ConfigurationError(
                "Cannot tell which Vault login method to use.",
                hint="set VAULTDB_AUTH_METHOD (kubernetes, jwt, approle, token, cert, proxy) "
                "and VAULTDB_AUTH_ROLE, or VAULT_TOKEN")
        reason = "picked from the environment"
    else:
        reason = "VAULTDB_AUTH_METHOD"
    auth: AuthMethod
    if method == "kubernetes":
        auth = KubernetesAuth(role=_required(role, "VAULTDB_AUTH_ROLE", method),
                              mount=mount or "kubernetes",
                              token_path=token_path or DEFAULT_SA_TOKEN_PATH)
    elif method == "jwt":
        auth = JWTAuth(role=_required(role, "VAULTDB_AUTH_ROLE", method), mount=mount or "jwt",
                       token_path=token_path or DEFAULT_SA_TOKEN_PATH)
    elif method == "approle":
        auth = AppRoleAuth(role_id=_required(raw(e, "VAULTDB_ROLE_ID"), "VAULTDB_ROLE_ID", method),
                           secret_id=raw(e, "VAULTDB_SECRET_ID"),
                           secret_id_path=raw(e, "VAULTDB_SECRET_ID_PATH"),
                           mount=mount or "approle",
                           wrapped_secret_id=raw(e, "VAULTDB_SECRET_ID_WRAPPED"),
                           wrapped_secret_id_path=raw(e, "VAULTDB_SECRET_ID_WRAPPED_PATH"))
    elif method == "token":
        path = raw(e, "VAULTDB_VAULT_TOKEN_PATH")
        if e is not os.environ and not (vault_token or path):
            # TokenAuth(token=None) would read os.environ at login: not the mapping given.
            raise ConfigurationError("token auth needs a token.",
                                     hint="set VAULT_TOKEN or VAULTDB_VAULT_TOKEN_PATH")
        auth = TokenAuth(token=vault_token, token_path=path)
    elif method == "cert":
        auth = CertAuth(
            cert_path=_required(raw(e, "VAULTDB_CLIENT_CERT_PATH") or raw(e, "VAULT_CLIENT_CERT"),
                                "VAULTDB_CLIENT_CERT_PATH", method),
            key_path=raw(e, "VAULTDB_CLIENT_KEY_PATH") or raw(e, "VAULT_CLIENT_KEY") or None,
            name=role or None, mount=mount or "cert")
    elif method == "proxy":
        auth = ProxyAuth()
    else:
        raise ConfigurationError(f"Unknown VAULTDB_AUTH_METHOD {method!r}.",
                                 hint="one of kubernetes, jwt, approle, token, cert, proxy")
    logger.info("Vault login method: %s (%s)", auth.describe(), reason)
    return auth


def _required(value: str | None, name: str, method: str) -> str:
    if not value:
        raise ConfigurationError(f"{method} auth needs {name}.", hint=f"set {name}")
    return value


def url_params() -> dict[str, Setting]:
    """``vaultdb_<param>`` query parameter name -> its setting."""
    return dict(_BY_PARAM)


def env_from_params(params: Mapping[str, str | tuple[str, ...]], env: Mapping[str, str]
                    ) -> dict[str, str]:
    """``env`` with the ``vaultdb_*`` URL query parameters of ``params`` laid over it.

    Every value is checked here, so a bad one is reported under its URL parameter name.
    Unknown ``vaultdb_*`` names (a typo) and secrets (which a URL would leak into logs) are
    refused.
    """
    merged = dict(env)
    for key, value in params.items():
        if not key.startswith(URL_PREFIX):
            continue
        setting = _BY_PARAM.get(key)
        if setting is None:
            if key in ("vaultdb_token", "vaultdb_vault_token", "vaultdb_secret_id",
                       "vaultdb_secret_id_wrapped"):
                raise ConfigurationError(
                    f"URL parameter {key} would put a secret in the URL; refused.",
                    hint="set VAULT_TOKEN / VAULTDB_SECRET_ID in the environment, or a file "
                    "with vaultdb_vault_token_path / vaultdb_secret_id_path")
            raise ConfigurationError(f"Unknown URL parameter {key}.",
                                     hint="one of " + ", ".join(sorted(_BY_PARAM)))
        if not isinstance(value, str):
            raise ConfigurationError(f"URL parameter {key} is given more than once.",
                                     hint=f"keep one {key}=...")
        parse(setting, value, label=f"URL parameter {key}")
        merged[setting.name] = value
        for alias in setting.aliases:  # the URL wins over BAO_* spellings too
            merged.pop(alias, None)
    return merged


#: The variables that carry a login secret by value (not a path, not a choice of method):
#: ``vaultdb exec`` removes exactly these from the environment of the command it runs. A login
#: method that reads another secret from the environment adds it here.
LOGIN_SECRET_VARIABLES: tuple[str, ...] = (
    "VAULT_TOKEN", "BAO_TOKEN", "VAULTDB_ROLE_ID", "VAULTDB_SECRET_ID",
    "VAULTDB_SECRET_ID_WRAPPED")
