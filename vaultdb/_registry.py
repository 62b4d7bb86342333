"""One provider per process and settings, shared by every adapter that builds its own.

The SQLAlchemy URL plugin, the Django backend and the asyncpg helper ask here instead of
constructing providers: two engines (or a Django alias and an engine) whose settings resolve
to the same role, Vault, login and timeouts share one provider, so a process holds one lease
per database role. Settings are normalised through :func:`vaultdb.settings.provider_kwargs`
before they are compared, so ``VAULTDB_ROLE=app`` in the environment and ``vaultdb_role=app``
in a URL are the same key. The key is a hash: the registry keeps no secret of its own.

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
from .provider import CredentialProvider, ProviderState

__all__ = ["fingerprint", "shared_provider"]

logger = logging.getLogger("vaultdb.registry")

_lock = threading.Lock()
_providers: dict[str, CredentialProvider] = {}


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
    kwargs = settings.provider_kwargs(e, overrides)
    key = fingerprint(kwargs, e)
    provider = _providers.get(key)
    if provider is not None and provider.state is not ProviderState.CLOSED:
        return provider
    with _lock:
        provider = _providers.get(key)
        if provider is None or provider.state is ProviderState.CLOSED:
            provider = _providers[key] = CredentialProvider.from_env(e, **kwargs)
            logger.debug("new shared provider for role %r", provider.role)
        return provider
