"""examples/vault/setup.sh against the real OpenBao dev server, then vaultdb logs in with it.

The script is the operator's: it runs with the ``bao`` CLI and a root token, on its own mount
paths (the stack's ``kubernetes`` and ``database`` mounts stay untouched), twice to prove it
is idempotent. PostgreSQL gets examples/vault/postgres-roles.sql first, and Vault connects as
the non-superuser ``vault_admin`` it creates.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from vaultdb import CredentialProvider, KubernetesAuth
from vaultdb.testing import VaultDBStack, database_users_of_role
from vaultdb.testing._openbao import find_bao_binary

ROOT = Path(__file__).resolve().parents[2]
SETUP = ROOT / "examples" / "vault" / "setup.sh"
ROLES_SQL = ROOT / "examples" / "vault" / "postgres-roles.sql"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def operator_setup(vaultdb_stack: VaultDBStack, tmp_path_factory: pytest.TempPathFactory
                   ) -> dict[str, str]:
    stack = vaultdb_stack
    tmp = tmp_path_factory.mktemp("vault-setup")
    stack.sql(ROLES_SQL.read_text())
    admin_password = uuid.uuid4().hex
    with stack.postgres.connect() as conn:
        conn.execute(sql.SQL("ALTER ROLE vault_admin PASSWORD {}").format(
            sql.Literal(admin_password)))
    ca = tmp / "cluster-ca.pem"
    ca.write_text(stack.kube.ca_pem)
    suffix = uuid.uuid4().hex[:6]
    settings = {
        "VAULT_BIN": find_bao_binary(),
        "K8S_AUTH_MOUNT": f"k8s-{suffix}",
        "DB_MOUNT": f"db-{suffix}",
        "K8S_HOST": stack.kube.url,
        "K8S_CA_CERT_FILE": str(ca),
        "DISABLE_LOCAL_CA_JWT": "true",
        # What `kubectl create token vault-auth -n vault` gives an external Vault.
        "TOKEN_REVIEWER_JWT": stack.kube.issue_token("vault-auth", "vault", ttl=86400),
        "PG_HOST": stack.postgres.host,
        "PG_PORT": str(stack.postgres.port),
        "PG_DATABASE": stack.postgres.database,
        "PG_SSLMODE": "disable",
        "PG_ADMIN_PASSWORD": admin_password,
        "LEASE_TTL": "30s",
        "LEASE_MAX_TTL": "2m",
    }
    env = stack.env(include_root_token=True, **settings)
    for attempt in (1, 2):  # the second run must change nothing and fail on nothing
        done = subprocess.run(["bash", str(SETUP)], env=env, capture_output=True, text=True,
                              timeout=120, check=False)
        assert done.returncode == 0, f"run {attempt}:\n{done.stdout}\n{done.stderr}"
        assert admin_password not in done.stdout + done.stderr
    assert "already enabled" in done.stderr
    # Without the admin password a re-run keeps the stored connection.
    env.pop("PG_ADMIN_PASSWORD")
    done = subprocess.run(["bash", str(SETUP)], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "kept" in done.stderr
    return settings


def _provider(stack: VaultDBStack, settings: dict[str, str], tmp_path: Path, *,
              role: str, service_account: str) -> CredentialProvider:
    token = stack.write_service_account_token(
        tmp_path / service_account / "token", service_account=service_account,
        namespace="app", audiences=("vault",))
    return CredentialProvider(
        role, vault_addr=stack.vault_addr, mount=settings["DB_MOUNT"], handle_sigterm=False,
        auth=KubernetesAuth(role=role, mount=settings["K8S_AUTH_MOUNT"], token_path=str(token)))


def _connect(stack: VaultDBStack, provider: CredentialProvider) -> psycopg.Connection[object]:
    creds = provider.credentials()
    return psycopg.connect(host=stack.postgres.host, port=stack.postgres.port,
                           dbname=stack.postgres.database, user=creds.username,
                           password=creds.password, autocommit=True, connect_timeout=5)


def test_setup_script_then_vaultdb_login_and_least_privilege(
        vaultdb_stack: VaultDBStack, operator_setup: dict[str, str], tmp_path: Path) -> None:
    stack = vaultdb_stack
    table = f"t_{uuid.uuid4().hex[:8]}"
    with _provider(stack, operator_setup, tmp_path, role="app-migrate",
                   service_account="app-migrate") as migrate:
        with _connect(stack, migrate) as conn:
            conn.execute(f"CREATE TABLE {table} (id bigserial PRIMARY KEY, note text)")
            owner = conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = %s",
                                 (table,)).fetchone()
        assert owner == ("app_owner",)
        migrate_user = migrate.credentials().username
    # Revocation dropped the migration user even though it created a table.
    assert migrate_user not in stack.dynamic_db_roles()

    with _provider(stack, operator_setup, tmp_path, role="app",
                   service_account="app") as app:
        with _connect(stack, app) as conn:
            conn.execute(f"INSERT INTO {table} (note) VALUES ('hello')")
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (1,)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"DROP TABLE {table}")
        # The app's token cannot read the migration role's credentials.
        status = app.status()
        assert status.healthy and status.generation == 1
        app_user = app.credentials().username
        assert app_user in database_users_of_role(stack, "app")
    assert app_user not in stack.dynamic_db_roles()


def test_revocation_ends_open_sessions(vaultdb_stack: VaultDBStack,
                                       operator_setup: dict[str, str], tmp_path: Path) -> None:
    stack = vaultdb_stack
    provider = _provider(stack, operator_setup, tmp_path, role="app", service_account="app")
    conn = _connect(stack, provider)
    user = provider.credentials().username
    assert stack.session_users().get(user) == 1
    provider.close()
    assert user not in stack.session_users()
    with pytest.raises(psycopg.OperationalError):
        conn.execute("SELECT 1")
    conn.close()


def test_wrong_service_account_is_refused(vaultdb_stack: VaultDBStack,
                                          operator_setup: dict[str, str],
                                          tmp_path: Path) -> None:
    from vaultdb import AuthenticationError

    # The app's service account may not log in as the migration role.
    token = vaultdb_stack.write_service_account_token(
        tmp_path / "token", service_account="app", namespace="app", audiences=("vault",))
    provider = CredentialProvider(
        "app-migrate", vault_addr=vaultdb_stack.vault_addr, mount=operator_setup["DB_MOUNT"],
        handle_sigterm=False, fetch_timeout=3,
        auth=KubernetesAuth(role="app-migrate", mount=operator_setup["K8S_AUTH_MOUNT"],
                            token_path=str(token)))
    with provider, pytest.raises(AuthenticationError):
        provider.credentials()


def test_script_is_shell_clean() -> None:
    done = subprocess.run(["bash", "-n", str(SETUP)], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert os.access(SETUP, os.X_OK)
