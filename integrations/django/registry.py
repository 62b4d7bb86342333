"""Translate ``DATABASES[alias]["VAULT"]`` into one provider per process and settings.

The ``VAULT`` dict holds provider options; what it leaves out comes from the environment
(``VAULTDB_*``, ``VAULT_ADDR``), as :meth:`CredentialProvider.from_env` reads it::

    "VAULT": {
        "role": "app-rw",                                  # <mount>/creds/<role>
        "mount": "database",
        "auth": {"method": "kubernetes", "role": "app"},   # or jwt / approle / token
        "set_role": "app_owner",                           # SET ROLE on each new connection
    }

Providers come from the core registry (:mod:`vaultdb._registry`), the one the SQLAlchemy URL
plugin uses too: aliases (and engines) whose settings resolve to the same role, Vault and login
share one provider, so a database reached through two aliases holds one lease per process.
This module only translates ``VAULT`` and remembers each alias' answer, because
:func:`get_provider` runs for every new connection. No Vault call happens here; providers
fetch on first use.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from typing import Any

from vaultdb import AppRoleAuth, CredentialProvider, JWTAuth, KubernetesAuth, TokenAuth
from vaultdb._registry import shared_provider
from vaultdb.auth import DEFAULT_SA_TOKEN_PATH, AuthMethod, CertAuth, ProxyAuth
from vaultdb.errors import ConfigurationError
from vaultdb.provider import ProviderState
from vaultdb.settings import SETTINGS, parse

__all__ = ["PROVIDER_KEYS", "VAULT_KEYS", "build_provider", "get_provider", "provider_for",
           "provider_options", "typed_values", "vault_settings"]

#: Keys of ``VAULT`` passed to :class:`~vaultdb.CredentialProvider` as they are.
PROVIDER_KEYS = frozenset(
    {s.keyword for s in SETTINGS if s.keyword and "." not in s.keyword}  # the settings table
    | {"renew_fraction", "jitter"})
#: Keys checked (and converted from strings) by the settings table's types.
_TYPED = {s.keyword: s for s in SETTINGS
          if s.keyword and "." not in s.keyword and s.kind != "str"}
#: Every key ``VAULT`` may have.
VAULT_KEYS = PROVIDER_KEYS | {"auth", "set_role", "prefetch", "login_session"}
#: Keys that do not change which Vault credentials an alias gets (so aliases still share).
_NOT_IDENTITY = frozenset({"set_role", "prefetch"})
AUTH_KEYS = frozenset({"method", "role", "mount", "token_path", "jwt", "role_id", "secret_id",
                       "secret_id_path", "token", "wrapped_secret_id_path", "cert_path",
                       "key_path"})
AUTH_METHODS = ("kubernetes", "jwt", "approle", "token", "cert", "proxy")

_lock = threading.Lock()
_providers: dict[str, CredentialProvider] = {}


def vault_settings(settings_dict: Mapping[str, Any]) -> dict[str, Any]:
    """The ``VAULT`` dict of one ``DATABASES`` entry (empty if absent), type-checked."""
    vault = settings_dict.get("VAULT") or {}
    if not isinstance(vault, Mapping):
        raise ConfigurationError(f"DATABASES[...]['VAULT'] must be a dict, not "
                                 f"{type(vault).__name__}.", hint="the VAULT setting")
    unknown = sorted(set(vault) - VAULT_KEYS)
    if unknown:
        raise ConfigurationError(f"Unknown VAULT setting(s) {', '.join(map(repr, unknown))}.",
                                 hint="allowed: " + ", ".join(sorted(VAULT_KEYS)))
    return dict(vault)


def _auth(spec: object, env: Mapping[str, str]) -> AuthMethod:
    if not isinstance(spec, Mapping):
        raise ConfigurationError("VAULT['auth'] must be a dict such as "
                                 "{'method': 'kubernetes', 'role': 'app'}.", hint="VAULT['auth']")
    unknown = sorted(set(spec) - AUTH_KEYS)
    if unknown:
        raise ConfigurationError(f"Unknown VAULT['auth'] key(s) {', '.join(map(repr, unknown))}.",
                                 hint="allowed: " + ", ".join(sorted(AUTH_KEYS)))
    method = str(spec.get("method") or env.get("VAULTDB_AUTH_METHOD") or "").lower()
    if method not in AUTH_METHODS:
        raise ConfigurationError(f"VAULT['auth']['method'] is {method or 'missing'!r}.",
                                 hint="one of " + ", ".join(AUTH_METHODS))
    mount = str(spec.get("mount") or env.get("VAULTDB_AUTH_MOUNT") or method)
    token_path = spec.get("token_path") or env.get("VAULTDB_TOKEN_PATH")
    if method in ("kubernetes", "jwt"):
        role = spec.get("role") or env.get("VAULTDB_AUTH_ROLE")
        if not role:
            raise ConfigurationError(f"{method} auth needs a role.",
                                     hint="VAULT['auth']['role'] or VAULTDB_AUTH_ROLE")
        if method == "kubernetes":
            return KubernetesAuth(role=str(role), mount=mount,
                                  token_path=str(token_path or DEFAULT_SA_TOKEN_PATH))
        jwt = spec.get("jwt")
        return JWTAuth(role=str(role), mount=mount, jwt=str(jwt) if jwt else None,
                       token_path=None if jwt else str(token_path or DEFAULT_SA_TOKEN_PATH))
    if method == "approle":
        role_id = spec.get("role_id") or env.get("VAULTDB_ROLE_ID")
        if not role_id:
            raise ConfigurationError("approle auth needs a role id.",
                                     hint="VAULT['auth']['role_id'] or VAULTDB_ROLE_ID")
        secret_id = spec.get("secret_id") or env.get("VAULTDB_SECRET_ID")
        secret_path = spec.get("secret_id_path") or env.get("VAULTDB_SECRET_ID_PATH")
        wrapped_path = (spec.get("wrapped_secret_id_path")
                        or env.get("VAULTDB_SECRET_ID_WRAPPED_PATH"))
        return AppRoleAuth(role_id=str(role_id), secret_id=str(secret_id) if secret_id else None,
                           secret_id_path=str(secret_path) if secret_path else None, mount=mount,
                           wrapped_secret_id_path=str(wrapped_path) if wrapped_path else None)
    if method == "cert":
        cert = spec.get("cert_path") or env.get("VAULTDB_CLIENT_CERT_PATH")
        if not cert:
            raise ConfigurationError("cert auth needs a client certificate.",
                                     hint="VAULT['auth']['cert_path'] or VAULTDB_CLIENT_CERT_PATH")
        key = spec.get("key_path") or env.get("VAULTDB_CLIENT_KEY_PATH")
        role = spec.get("role") or env.get("VAULTDB_AUTH_ROLE")
        return CertAuth(cert_path=str(cert), key_path=str(key) if key else None,
                        name=str(role) if role else None, mount=mount)
    if method == "proxy":
        return ProxyAuth()
    token = spec.get("token")
    vault_token_path = spec.get("token_path") or env.get("VAULTDB_VAULT_TOKEN_PATH")
    return TokenAuth(token=str(token) if token else None,
                     token_path=str(vault_token_path) if vault_token_path else None)


def typed_values(vault: Mapping[str, Any]) -> dict[str, Any]:
    """The ``VAULT`` values the settings table has a type for, checked and converted.

    ``"2.5"`` becomes 2.5, ``"yes"`` True; a bad one (``0`` or ``"abc"`` seconds) is a
    :class:`ConfigurationError` naming ``VAULT['<key>']``.
    """
    typed: dict[str, Any] = {}
    for key, value in vault.items():
        setting = _TYPED.get(key)
        if setting is None or key == "verify" or (setting.kind == "bool"
                                                   and isinstance(value, bool)):
            continue
        typed[key] = parse(setting, str(value), label=f"VAULT[{key!r}]")
    return typed


def provider_options(vault: Mapping[str, Any], env: Mapping[str, str] | None = None
                     ) -> dict[str, Any]:
    """Keyword arguments for :meth:`CredentialProvider.from_env` from a ``VAULT`` dict."""
    e = os.environ if env is None else env
    options = {**{k: v for k, v in vault.items() if k in PROVIDER_KEYS}, **typed_values(vault)}
    if vault.get("login_session"):
        options["login_session"] = str(vault["login_session"])
    if "auth" in vault:
        options["auth"] = _auth(vault["auth"], e)
    return options


def build_provider(vault: Mapping[str, Any]) -> CredentialProvider:
    """A new provider for ``vault`` (not shared; no network, no thread)."""
    options = provider_options(vault)
    options.pop("login_session", None)  # a provider of its own logs in on its own
    return CredentialProvider.from_env(**options)


def _cache_key(vault: Mapping[str, Any]) -> str:
    return json.dumps({k: v for k, v in vault.items() if k not in _NOT_IDENTITY},
                      sort_keys=True, default=repr)


def get_provider(settings_dict: Mapping[str, Any]) -> CredentialProvider:
    """The process-wide provider for a ``DATABASES`` entry; made on first use.

    A provider closed by a shutdown hook is replaced on the next call, so a process that keeps
    serving after :func:`vaultdb.close_all` (a test, an embedded server) gets fresh credentials.
    """
    vault = vault_settings(settings_dict)
    key = _cache_key(vault)
    provider = _providers.get(key)
    if provider is not None and provider.state is not ProviderState.CLOSED:
        return provider
    with _lock:
        provider = _providers[key] = shared_provider(**provider_options(vault))
        return provider


def provider_for(alias: str = "default") -> CredentialProvider:
    """The provider serving database ``alias`` (e.g. for a health view or metrics)."""
    from django.db import connections

    return get_provider(connections[alias].settings_dict)
