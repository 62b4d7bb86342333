"""Django's PostgreSQL backend, logging in with short-lived credentials from Vault/OpenBao.

``ENGINE = "vaultdb.integrations.django.postgresql"`` (Django loads ``ENGINE + ".base"``).
Subclasses Django's own backend (psycopg 3, or psycopg2 where that is what is installed) and
uses the hooks Django documents for backends:

* ``get_new_connection``: Django calls it for every new connection; it logs in with
  ``provider.credentials()`` (no Vault call while they are valid) and stamps the connection
  with its generation. A refused login (lease lost, user dropped) refreshes once and retries.
* ``close_if_unusable_or_obsolete``: Django calls it at each request start and end (and Celery
  between tasks); a persistent connection (``CONN_MAX_AGE``) of a retired generation is closed
  there, during the drain window, so before the old lease is revoked.
* ``pool`` (Django 5.1+, ``OPTIONS["pool"]``): see :mod:`._pool`.
* ``VAULT["set_role"]``: ``SET ROLE`` on each new connection, pooled or not, so objects created
  by migrations belong to a stable owner role and revocation can drop the dynamic user.
* Test databases: ``TEST["VAULT"]`` overrides ``VAULT`` while the test runner creates, uses and
  destroys test databases (e.g. a Vault role whose users may CREATE DATABASE).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db.backends.base.base import NO_DB_ALIAS
from django.db.backends.postgresql import base as pg_base
from django.db.backends.postgresql.client import DatabaseClient as PgDatabaseClient
from django.db.backends.postgresql.creation import DatabaseCreation as PgDatabaseCreation
from django.db.backends.postgresql.psycopg_any import is_psycopg3

from vaultdb import CredentialProvider

from ..registry import get_provider, vault_settings
from ._connect import connect_with_credentials, set_role

__all__ = ["DatabaseClient", "DatabaseCreation", "DatabaseWrapper"]

logger = logging.getLogger("vaultdb.integrations.django")

#: Django 5.1+ with psycopg 3 has a native pool.
POOL_SUPPORTED: bool = hasattr(pg_base.DatabaseWrapper, "pool") and bool(is_psycopg3)


class DatabaseClient(PgDatabaseClient):  # type: ignore[misc]
    """``manage.py dbshell`` with the provider's current credentials (``PGPASSWORD``)."""

    @classmethod
    def settings_to_cmd_args_env(cls, settings_dict: dict[str, Any], parameters: Iterable[str]
                                 ) -> tuple[list[str], dict[str, str] | None]:
        creds = get_provider(settings_dict).credentials()
        settings_dict = {**settings_dict, "USER": creds.username, "PASSWORD": creds.password}
        result: tuple[list[str], dict[str, str] | None] = super().settings_to_cmd_args_env(
            settings_dict, parameters)
        return result


class DatabaseCreation(PgDatabaseCreation):  # type: ignore[misc]
    """Applies ``TEST["VAULT"]`` while test databases exist."""

    _vaultdb_saved: dict[str, Any] | None = None

    def create_test_db(self, *args: Any, **kwargs: Any) -> str:
        test_vault = (self.connection.settings_dict.get("TEST") or {}).get("VAULT")
        if test_vault and self._vaultdb_saved is None:
            original = dict(self.connection.settings_dict.get("VAULT") or {})
            self.connection.close()
            if POOL_SUPPORTED:
                self.connection.close_pool()
            self._vaultdb_set({**original, **test_vault})
            self._vaultdb_saved = original
            logger.info("vaultdb: test databases of alias %r use VAULT %r overrides",
                        self.connection.alias, sorted(test_vault))
        name: str = super().create_test_db(*args, **kwargs)
        return name

    def destroy_test_db(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().destroy_test_db(*args, **kwargs)
        finally:
            if self._vaultdb_saved is not None:
                self._vaultdb_set(self._vaultdb_saved)
                self._vaultdb_saved = None

    def _vaultdb_set(self, vault: dict[str, Any]) -> None:
        self.connection.settings_dict["VAULT"] = vault
        entry = settings.DATABASES.get(self.connection.alias)
        if entry is not None and entry is not self.connection.settings_dict:
            entry["VAULT"] = vault


class DatabaseWrapper(pg_base.DatabaseWrapper):  # type: ignore[misc]
    client_class = DatabaseClient
    creation_class = DatabaseCreation

    #: ``(provider, generation)`` of the open non-pooled connection.
    _vaultdb_stamp: tuple[CredentialProvider, int] | None = None

    # -- helpers -----------------------------------------------------------------------------

    @property
    def vaultdb_provider(self) -> CredentialProvider:
        """The provider whose credentials this alias logs in with."""
        return get_provider(self.settings_dict)

    def _vaultdb_role(self) -> str | None:
        role = vault_settings(self.settings_dict).get("set_role")
        if role is None and self.alias != NO_DB_ALIAS and self._vaultdb_pooled():
            # Django's assume_role would deadlock inside the pool's configure: done here.
            role = self.settings_dict["OPTIONS"].get("assume_role")
        return str(role) if role else None

    def _vaultdb_pooled(self) -> bool:
        return POOL_SUPPORTED and bool(self.settings_dict["OPTIONS"].get("pool"))

    # -- connections -------------------------------------------------------------------------

    def get_connection_params(self) -> dict[str, Any]:
        params: dict[str, Any] = super().get_connection_params()
        # Credentials come from Vault for each new connection, never from USER/PASSWORD.
        params.pop("user", None)
        params.pop("password", None)
        return params

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        if self._vaultdb_pooled():
            return super().get_new_connection(conn_params)  # the pool's connection class logs in
        provider = self.vaultdb_provider

        def login(params: dict[str, Any]) -> Any:
            return super(DatabaseWrapper, self).get_new_connection(params)

        connection, creds = connect_with_credentials(provider, login, conn_params,
                                                     self.Database.OperationalError)
        role = self._vaultdb_role()
        if role:
            set_role(connection, role)
        self._vaultdb_stamp = (provider, creds.generation)
        logger.debug("vaultdb: alias %r connected as %r (generation %d)", self.alias,
                     creds.username, creds.generation)
        return connection

    def close_if_unusable_or_obsolete(self) -> None:
        stamp = self._vaultdb_stamp
        if self.connection is not None and stamp is not None and not self._vaultdb_pooled():
            provider = self.vaultdb_provider
            if stamp[0] is not provider or not provider.is_current(stamp[1]):
                logger.debug("vaultdb: closing alias %r connection of retired generation %d",
                             self.alias, stamp[1])
                self._vaultdb_stamp = None
                self.close()
                return
        super().close_if_unusable_or_obsolete()

    # -- Django's native pool ----------------------------------------------------------------

    @property
    def pool(self) -> Any:
        if self.alias == NO_DB_ALIAS or not self._vaultdb_pooled():
            return None
        pools: dict[str, Any] = self._connection_pools  # type: ignore[attr-defined]
        existing = pools.get(self.alias)
        if existing is not None:
            if getattr(existing, "_vaultdb_pid", None) == os.getpid():
                return existing
            # Inherited through fork: its sockets are the parent's; never close them here.
            pools.pop(self.alias, None)
        if self.settings_dict.get("CONN_MAX_AGE", 0) != 0:
            raise ImproperlyConfigured("Pooling doesn't support persistent connections.")
        from ._pool import make_pool

        options = self.settings_dict["OPTIONS"]["pool"]
        pool = make_pool(self, self._vaultdb_role(), {} if options is True else dict(options))
        pool._vaultdb_pid = os.getpid()  # type: ignore[attr-defined]
        return pools.setdefault(self.alias, pool)

    def close_pool(self) -> None:
        pools: dict[str, Any] = self._connection_pools  # type: ignore[attr-defined]
        hooks = getattr(pools.get(self.alias), "_vaultdb_hooks", None)
        if hooks is not None:
            hooks.unsubscribe()
        if POOL_SUPPORTED:
            super().close_pool()
