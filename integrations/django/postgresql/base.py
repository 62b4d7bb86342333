"""Django's PostgreSQL backend, logging in with short-lived credentials from Vault/OpenBao.

``ENGINE = "vaultdb.integrations.django.postgresql"`` (Django loads ``ENGINE + ".base"``).
Subclasses Django's own backend (psycopg 3, or psycopg2 where that is what is installed) with
what every vaultdb ENGINE shares (:mod:`.._backend`: logins through the one refresh guard,
generation stamps, retirement of persistent connections, ``dbshell``, ``TEST["VAULT"]``), plus:

* ``pool`` (Django 5.1+, ``OPTIONS["pool"]``): see :mod:`._pool`. Django builds its
  no-database connection (``_nodb_cursor``: test database creation) without a pool, so that one
  logs in through the plain path.
* ``VAULT["set_role"]``: ``SET ROLE`` on each new connection, pooled or not, so objects created
  by migrations belong to a stable owner role and revocation can drop the dynamic user.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db.backends.base.base import NO_DB_ALIAS
from django.db.backends.postgresql import base as pg_base
from django.db.backends.postgresql.client import DatabaseClient as PgDatabaseClient
from django.db.backends.postgresql.creation import DatabaseCreation as PgDatabaseCreation
from django.db.backends.postgresql.psycopg_any import is_psycopg3

from .._backend import VaultDBClientMixin, VaultDBCreationMixin, VaultDBWrapperMixin
from ..registry import vault_settings
from ._connect import set_role

__all__ = ["DatabaseClient", "DatabaseCreation", "DatabaseWrapper"]

logger = logging.getLogger("vaultdb.integrations.django")

#: Django 5.1+ with psycopg 3 has a native pool.
POOL_SUPPORTED: bool = hasattr(pg_base.DatabaseWrapper, "pool") and bool(is_psycopg3)


class DatabaseClient(VaultDBClientMixin, PgDatabaseClient):  # type: ignore[misc]
    """``manage.py dbshell`` with the provider's current credentials (``PGPASSWORD``)."""


class DatabaseCreation(VaultDBCreationMixin, PgDatabaseCreation):  # type: ignore[misc]
    """Applies ``TEST["VAULT"]`` while test databases exist."""


class DatabaseWrapper(VaultDBWrapperMixin, pg_base.DatabaseWrapper):  # type: ignore[misc]
    client_class = DatabaseClient
    creation_class = DatabaseCreation

    def _vaultdb_role(self) -> str | None:
        role = vault_settings(self.settings_dict).get("set_role")
        if role is None and self.vaultdb_pooled():
            # Django's assume_role would deadlock inside the pool's configure: done here.
            role = self.settings_dict["OPTIONS"].get("assume_role")
        return str(role) if role else None

    def vaultdb_pooled(self) -> bool:
        """Django's pool serves this wrapper: never the no-database one, which it builds
        without a pool (``_nodb_cursor``, test database creation)."""
        return (POOL_SUPPORTED and self.alias != NO_DB_ALIAS
                and bool(self.settings_dict["OPTIONS"].get("pool")))

    def vaultdb_configure(self, connection: Any) -> None:
        role = self._vaultdb_role()
        if role:
            set_role(connection, role)

    # -- Django's native pool ----------------------------------------------------------------

    @property
    def pool(self) -> Any:
        if not self.vaultdb_pooled():
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
