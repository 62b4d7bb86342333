"""Alembic env.py: run migrations as a short-lived Vault database user.

The recipe:

* one :class:`~vaultdb.CredentialProvider` for the run, built from the environment
  (``VAULT_ADDR``, a login method such as ``VAULT_TOKEN`` or Kubernetes auth, ``VAULTDB_ROLE``);
* an engine from :func:`vaultdb.integrations.sqlalchemy.create_engine` with ``NullPool``
  (a migration needs one connection and nothing pooled afterwards);
* objects are owned by a stable owner role, never by the dynamic user: either the Vault role's
  creation statements set it server-side (``ALTER ROLE "{{name}}" SET role = 'app_owner'``),
  or set ``VAULTDB_SET_ROLE=app_owner`` so each connection runs ``SET ROLE``. Otherwise the
  user owns the new tables and Vault's revocation (``DROP ROLE``) fails;
* the provider is closed when the run ends, which revokes the lease: the migration user is
  dropped seconds after the migration, not at the end of its TTL.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy.pool import NullPool
from vaultdb.integrations.sqlalchemy import create_engine

from vaultdb import CredentialProvider

config = context.config
if config.config_file_name is not None:
    from logging.config import fileConfig

    fileConfig(config.config_file_name)

target_metadata = None  # your models' MetaData, for autogenerate


def database_url() -> str:
    url = os.environ.get("DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("set DATABASE_URL (without user or password)")
    return url


def run_migrations_offline() -> None:
    """``alembic upgrade --sql``: render SQL, no database and no Vault needed."""
    context.configure(url=database_url(), target_metadata=target_metadata,
                      literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    with CredentialProvider.from_env() as provider:  # closing revokes the lease
        engine = create_engine(database_url(), provider=provider, poolclass=NullPool,
                               set_role=os.environ.get("VAULTDB_SET_ROLE") or None)
        try:
            with engine.connect() as connection:
                context.configure(connection=connection, target_metadata=target_metadata)
                with context.begin_transaction():
                    context.run_migrations()
        finally:
            engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
