"""Django's MySQL/MariaDB backend, logging in with short-lived credentials from Vault/OpenBao.

``ENGINE = "vaultdb.integrations.django.mysql"`` with the same ``VAULT`` settings key as the
PostgreSQL ENGINE (point ``VAULT["mount"]`` at the secrets mount that serves MySQL).
Subclasses Django's own MySQL backend (mysqlclient, Django's recommended driver; PyMySQL through
``pymysql.install_as_MySQLdb()`` works too) with what every vaultdb ENGINE shares
(:mod:`.._backend`): logins through the one refresh guard (MySQL's codes 1044/1045 mean "refresh
once"), generation stamps, retirement of persistent connections at request boundaries,
``dbshell`` and ``mysqldump`` (parallel test databases) with the current credentials, and
``TEST["VAULT"]``. MySQL has no object owner, so there is no ``set_role``: grant the dynamic
users privileges on the schema (docs/mysql.md).
"""

from __future__ import annotations

from django.db.backends.mysql import base as mysql_base
from django.db.backends.mysql.client import DatabaseClient as MySQLDatabaseClient
from django.db.backends.mysql.creation import DatabaseCreation as MySQLDatabaseCreation

from .._backend import VaultDBClientMixin, VaultDBCreationMixin, VaultDBWrapperMixin

__all__ = ["DatabaseClient", "DatabaseCreation", "DatabaseWrapper"]


class DatabaseClient(VaultDBClientMixin, MySQLDatabaseClient):  # type: ignore[misc]
    """``manage.py dbshell`` with the provider's current credentials (``MYSQL_PWD``)."""


class DatabaseCreation(VaultDBCreationMixin, MySQLDatabaseCreation):  # type: ignore[misc]
    """Applies ``TEST["VAULT"]`` while test databases exist."""


class DatabaseWrapper(VaultDBWrapperMixin, mysql_base.DatabaseWrapper):  # type: ignore[misc]
    client_class = DatabaseClient
    creation_class = DatabaseCreation
