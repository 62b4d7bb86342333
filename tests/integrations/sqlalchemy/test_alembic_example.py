"""examples/alembic runs with the real ``alembic`` command as a dynamic Vault user.

Each run's user is revoked when the run ends (the provider closes), and revocation succeeds
because the tables belong to the owner role, not to the user that created them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vaultdb.testing import VaultDBStack
from vaultdb.testing import database_users_of_role as roles_of

INI = Path(__file__).resolve().parents[3] / "examples" / "alembic" / "alembic.ini"


def alembic(stack: VaultDBStack, role: str, *args: str, set_role: str = "") -> str:
    pg = stack.postgres
    env = stack.env(VAULT_TOKEN=stack.create_token(ttl=120), VAULTDB_ROLE=role,
                    VAULTDB_SET_ROLE=set_role, VAULTDB_HANDLE_SIGTERM="0",
                    DATABASE_URL=f"postgresql+psycopg://{pg.host}:{pg.port}/{pg.database}")
    done = subprocess.run([sys.executable, "-m", "alembic", "-c", str(INI), *args], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stderr


@pytest.mark.parametrize("server_side_role", [True, False], ids=["alter-role", "set-role"])
def test_migrations_run_as_dynamic_user_and_revocation_succeeds(
        vaultdb_stack: VaultDBStack, vaultdb_role_name: str, server_side_role: bool) -> None:
    pg = vaultdb_stack.postgres
    role = vaultdb_role_name
    creation = None if server_side_role else [
        "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' "
        f"VALID UNTIL '{{{{expiration}}}}' IN ROLE \"{pg.owner_role}\";",
        f'GRANT CONNECT ON DATABASE "{pg.database}" TO "{{{{name}}}}";']
    vaultdb_stack.create_database_role(role, default_ttl=60, max_ttl=120,
                                       creation_statements=creation)
    set_role = "" if server_side_role else pg.owner_role

    log = alembic(vaultdb_stack, role, "upgrade", "head", set_role=set_role)
    assert "Running upgrade 0001 -> 0002" in log
    assert "revoked lease" in log
    owners = vaultdb_stack.sql("SELECT tablename, tableowner FROM pg_tables "
                               "WHERE tablename IN ('notes', 'alembic_version')")
    assert sorted(owners) == [("alembic_version", pg.owner_role), ("notes", pg.owner_role)]
    assert vaultdb_stack.sql("SELECT version_num FROM alembic_version") == [("0002",)]
    assert not roles_of(vaultdb_stack, role)  # dropped: it owned nothing

    alembic(vaultdb_stack, role, "downgrade", "base", set_role=set_role)  # another user
    assert vaultdb_stack.sql("SELECT to_regclass('notes') IS NULL") == [(True,)]
    assert not roles_of(vaultdb_stack, role)
    vaultdb_stack.sql("DROP TABLE alembic_version")


def test_offline_mode_needs_no_vault(vaultdb_stack: VaultDBStack) -> None:
    log = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(INI), "upgrade", "head", "--sql"],
        env=vaultdb_stack.env(DATABASE_URL="postgresql+psycopg://db.invalid/app"),
        capture_output=True, text=True, timeout=60)
    assert log.returncode == 0, log.stderr
    assert "CREATE TABLE notes" in log.stdout
