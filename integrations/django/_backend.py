"""What every vaultdb ENGINE shares (PostgreSQL and MySQL/MariaDB alike).

Each ENGINE subclasses Django's own backend and mixes these in, using the hooks Django documents
for backends:

* ``get_new_connection``: Django calls it for every new connection; it logs in with
  ``provider.credentials()`` (no Vault call while they are valid) and stamps the connection
  with its generation. A refused login refreshes the credentials once, through the same
  :class:`~vaultdb.integrations._common.RefreshGuard` and ``is_auth_failure`` as the SQLAlchemy
  and psycopg adapters: a server that refuses every dynamic user (PgBouncer with a static auth
  file, a firewall rule) costs one extra lease, not one per request.
* ``close_if_unusable_or_obsolete``: Django calls it at each request start and end (and Celery
  between tasks); a persistent connection (``CONN_MAX_AGE``) of a retired generation is closed
  there, during the drain window, so before the old lease is revoked.
* ``dbshell`` (and ``mysqldump`` for parallel MySQL test databases) gets the current
  credentials; ``TEST["VAULT"]`` overrides ``VAULT`` while test databases exist.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from django.conf import settings

from vaultdb import CredentialProvider, Credentials

from .._common import RefreshGuard, is_auth_failure
from .registry import get_provider

__all__ = ["VaultDBClientMixin", "VaultDBCreationMixin", "VaultDBWrapperMixin",
           "connect_with_credentials", "refresh_guard"]

logger = logging.getLogger("vaultdb.integrations.django")

C = TypeVar("C")

#: Keys of Django's connection parameters that would carry a static login.
_LOGIN_KEYS = ("user", "password", "passwd")

_guards: weakref.WeakKeyDictionary[CredentialProvider, RefreshGuard] = (
    weakref.WeakKeyDictionary())
_guards_lock = threading.Lock()


def refresh_guard(provider: CredentialProvider) -> RefreshGuard:
    """The one guard of ``provider``, shared by every alias, thread and pool using it."""
    with _guards_lock:
        guard = _guards.get(provider)
        if guard is None:
            guard = _guards[provider] = RefreshGuard(provider)
        return guard


def connect_with_credentials(
    provider: CredentialProvider,
    connect: Callable[[dict[str, Any]], C],
    params: dict[str, Any],
    operational_error: type[BaseException],
) -> tuple[C, Credentials]:
    """``connect(params + user/password)``; after a login refusal, refresh once and retry."""
    creds = provider.credentials()
    try:
        return connect({**params, "user": creds.username, "password": creds.password}), creds
    except operational_error as exc:
        if not is_auth_failure(exc):
            raise
        guard = refresh_guard(provider)
        fresh = guard.refresh(creds)
        if fresh is None:
            raise
        logger.warning("vaultdb: database login as %r (generation %d) was refused; retrying "
                       "once as %r (generation %d)", creds.username, creds.generation,
                       fresh.username, fresh.generation)
    try:
        return connect({**params, "user": fresh.username, "password": fresh.password}), fresh
    except operational_error as again:
        if is_auth_failure(again):
            guard.retry_failed(fresh)
        raise


def with_credentials(settings_dict: dict[str, Any]) -> dict[str, Any]:
    """``settings_dict`` with ``USER``/``PASSWORD`` from the provider (for client programs)."""
    creds = get_provider(settings_dict).credentials()
    options = {k: v for k, v in (settings_dict.get("OPTIONS") or {}).items()
               if k not in _LOGIN_KEYS}
    return {**settings_dict, "USER": creds.username, "PASSWORD": creds.password,
            "OPTIONS": options}


class VaultDBClientMixin:
    """``manage.py dbshell`` with the provider's current credentials."""

    @classmethod
    def settings_to_cmd_args_env(cls, settings_dict: dict[str, Any], parameters: Iterable[str]
                                 ) -> tuple[list[str], dict[str, str] | None]:
        result: tuple[list[str], dict[str, str] | None] = (
            super().settings_to_cmd_args_env(  # type: ignore[misc]
                with_credentials(settings_dict), parameters))
        return result


class VaultDBCreationMixin:
    """Applies ``TEST["VAULT"]`` while test databases exist."""

    connection: Any
    _vaultdb_saved: dict[str, Any] | None = None

    def create_test_db(self, *args: Any, **kwargs: Any) -> str:
        test_vault = (self.connection.settings_dict.get("TEST") or {}).get("VAULT")
        if test_vault and self._vaultdb_saved is None:
            original = dict(self.connection.settings_dict.get("VAULT") or {})
            self.connection.close()
            if self.connection.vaultdb_pooled():
                self.connection.close_pool()
            self._vaultdb_set({**original, **test_vault})
            self._vaultdb_saved = original
            logger.info("vaultdb: test databases of alias %r use VAULT %r overrides",
                        self.connection.alias, sorted(test_vault))
        name: str = super().create_test_db(*args, **kwargs)  # type: ignore[misc]
        return name

    def destroy_test_db(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().destroy_test_db(*args, **kwargs)  # type: ignore[misc]
        finally:
            if self._vaultdb_saved is not None:
                self._vaultdb_set(self._vaultdb_saved)
                self._vaultdb_saved = None

    def _vaultdb_set(self, vault: dict[str, Any]) -> None:
        self.connection.settings_dict["VAULT"] = vault
        entry = settings.DATABASES.get(self.connection.alias)
        if entry is not None and entry is not self.connection.settings_dict:
            entry["VAULT"] = vault


class VaultDBWrapperMixin:
    """Logins, generation stamps and retirement of persistent connections."""

    settings_dict: dict[str, Any]
    alias: str
    connection: Any
    Database: Any

    #: ``(provider, generation)`` of the open non-pooled connection.
    _vaultdb_stamp: tuple[CredentialProvider, int] | None = None

    @property
    def vaultdb_provider(self) -> CredentialProvider:
        """The provider whose credentials this alias logs in with."""
        return get_provider(self.settings_dict)

    def vaultdb_pooled(self) -> bool:
        """Whether a pool's connection class logs in for this wrapper (not the wrapper)."""
        return False

    def vaultdb_configure(self, connection: Any) -> None:
        """Hook for a backend: runs on each new (non-pooled) connection after the login."""

    def get_connection_params(self) -> dict[str, Any]:
        params: dict[str, Any] = super().get_connection_params()  # type: ignore[misc]
        # Credentials come from Vault for each new connection, never from USER/PASSWORD.
        for key in _LOGIN_KEYS:
            params.pop(key, None)
        return params

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        if self.vaultdb_pooled():
            return super().get_new_connection(conn_params)  # type: ignore[misc]
        provider = self.vaultdb_provider

        def login(params: dict[str, Any]) -> Any:
            return super(VaultDBWrapperMixin, self).get_new_connection(  # type: ignore[misc]
                params)

        connection, creds = connect_with_credentials(provider, login, conn_params,
                                                     self.Database.OperationalError)
        self.vaultdb_configure(connection)
        self._vaultdb_stamp = (provider, creds.generation)
        logger.debug("vaultdb: alias %r connected as %r (generation %d)", self.alias,
                     creds.username, creds.generation)
        return connection

    def close_if_unusable_or_obsolete(self) -> None:
        stamp = self._vaultdb_stamp
        if self.connection is not None and stamp is not None and not self.vaultdb_pooled():
            provider = self.vaultdb_provider
            if stamp[0] is not provider or not provider.is_current(stamp[1]):
                logger.debug("vaultdb: closing alias %r connection of retired generation %d",
                             self.alias, stamp[1])
                self._vaultdb_stamp = None
                self.close()  # type: ignore[attr-defined]
                return
        super().close_if_unusable_or_obsolete()  # type: ignore[misc]
