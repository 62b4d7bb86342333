"""One provider per process and settings, shared by every adapter that builds its own.

The SQLAlchemy URL plugin, the Django backend and the asyncpg helper ask here instead of
constructing providers: two engines (or a Django alias and an engine) whose settings resolve
to the same role, Vault, login and timeouts share one provider, so a process holds one lease
per database role. Settings are normalised through :func:`vaultdb.settings.provider_kwargs`
before they are compared, so ``VAULTDB_ROLE=app`` in the environment and ``vaultdb_role=app``
in a URL are the same key. The key is a hash: the registry keeps no secret of its own.

Providers whose login settings match (method, its role and files, Vault address, namespace,
TLS) also share one :class:`~vaultdb.LoginSession`: one login and one token renewal for a
read-only and a read-write role, or two databases. ``VAULTDB_LOGIN_SESSION`` (URL parameter
``vaultdb_login_session``, Django ``VAULT['login_session']``) names a session: providers with
different names never share one.

Providers live until process exit (or :func:`vaultdb.close_all`); one closed meanwhile is
replaced on the next call. Disposing an engine never closes the shared provider. After
``os.fork`` the core makes each provider drop what the parent held; the lock is renewed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import threading
from collections.abc import Mapping
from typing import Any

from . import settings
from ._session import LoginSession
from .provider import CredentialProvider, ProviderState

__all__ = ["fingerprint", "shared_provider"]

#: The provider arguments that make up a login (what a shared session is keyed by).
LOGIN_KEYS = ("auth", "vault_addr", "namespace", "verify", "request_timeout")

logger = logging.getLogger("vaultdb.registry")

_lock = threading.Lock()
_providers: dict[str, CredentialProvider] = {}
_sessions: dict[str, LoginSession] = {}


def _reset_after_fork() -> None:
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_after_fork)


def fingerprint(kwargs: Mapping[str, Any], env: Mapping[str, str]) -> str:
    """A hash of everything that decides which credentials a provider gets."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return [type(value).__name__, dataclasses.asdict(value)]
        return value

    identity = {key: plain(value) for key, value in kwargs.items()}
    identity["client_cert"] = settings.vault_connection(env, verify_given=True)["client_cert"]
    text = json.dumps(identity, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


def shared_provider(env: Mapping[str, str] | None = None, **overrides: Any
                    ) -> CredentialProvider:
    """The process's provider for these settings (``env`` + ``overrides``); made on first use.

    Same arguments as :meth:`CredentialProvider.from_env`. No Vault call happens here.
    """
    e = dict(settings.environ() if env is None else env)
    overrides = dict(overrides)
    name = overrides.pop("login_session", None)
    if name:
        e["VAULTDB_LOGIN_SESSION"] = str(name)
    kwargs = settings.provider_kwargs(e, overrides)
    key = fingerprint({**kwargs, "login_session": settings.raw(e, "VAULTDB_LOGIN_SESSION")}, e)
    provider = _providers.get(key)
    if provider is not None and provider.state is not ProviderState.CLOSED:
        return provider
    with _lock:
        provider = _providers.get(key)
        if provider is None or provider.state is ProviderState.CLOSED:
            session = _session_for(kwargs, e)
            provider = _providers[key] = CredentialProvider.from_env(e, **kwargs,
                                                                     session=session)
            logger.debug("new shared provider for role %r", provider.role)
        return provider


def _session_for(kwargs: Mapping[str, Any], env: Mapping[str, str]) -> LoginSession:
    """The process's login session for these login settings (and session name)."""
    login = {k: kwargs.get(k) for k in LOGIN_KEYS}
    name = settings.raw(env, "VAULTDB_LOGIN_SESSION") or ""
    key = f"{name}:{fingerprint(login, env)}"
    session = _sessions.get(key)
    if session is None:
        with settings.scoped(env):
            session = _sessions[key] = LoginSession(
                kwargs["auth"], vault_addr=kwargs.get("vault_addr"),
                namespace=kwargs.get("namespace"), verify=kwargs.get("verify"),
                request_timeout=kwargs.get("request_timeout"))
    return session
