"""examples/vault/setup.sh with DB_KIND=mysql, against real OpenBao and MariaDB.

As for PostgreSQL (tests/ops/test_vault_setup.py): mysql-setup.sql as the database's
administrator (with the mariadb client, as an operator would), the script twice on its own
mounts, then pods log in with Kubernetes auth and get least-privilege users.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import pymysql
import pytest

from vaultdb import CredentialProvider, KubernetesAuth
from vaultdb.testing import MySQLTarget, wait_for
from vaultdb.testing._openbao import find_bao_binary

ROOT = Path(__file__).resolve().parents[3]
SETUP = ROOT / "examples" / "vault" / "setup.sh"
MYSQL_SQL = ROOT / "examples" / "vault" / "mysql-setup.sql"

pytestmark = pytest.mark.slow


def _client() -> str:
    found = shutil.which("mariadb") or shutil.which("mysql")
    if found is None:
        pytest.fail("the mariadb client is not installed (it comes with mariadb-server)")
    return found


@pytest.fixture(scope="module", params=["KILL USER", "procedure"])
def operator_setup(request: pytest.FixtureRequest, vaultdb_mysql: MySQLTarget,
                   tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    stack, server = vaultdb_mysql.stack, vaultdb_mysql.server
    for _ in (1, 2):  # idempotent
        done = subprocess.run([_client(), "--no-defaults", f"--socket={server.socket}",
                               "--user=root"], input=MYSQL_SQL.read_text(), text=True,
                              capture_output=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
    admin_password = uuid.uuid4().hex
    server.sql("ALTER USER 'vault_admin'@'%%' IDENTIFIED BY %s ACCOUNT UNLOCK",
               (admin_password,))
    tmp = tmp_path_factory.mktemp("vault-setup-mysql")
    ca = tmp / "cluster-ca.pem"
    ca.write_text(stack.kube.ca_pem)
    suffix = uuid.uuid4().hex[:6]
    settings = {
        "VAULT_BIN": find_bao_binary(),
        "K8S_AUTH_MOUNT": f"k8s-{suffix}",
        "DB_MOUNT": f"my-{suffix}",
        "DB_KIND": "mysql",
        "K8S_HOST": stack.kube.url,
        "K8S_CA_CERT_FILE": str(ca),
        "DISABLE_LOCAL_CA_JWT": "true",
        "TOKEN_REVIEWER_JWT": stack.kube.issue_token("vault-auth", "vault", ttl=86400),
        "MYSQL_HOST": server.host,
        "MYSQL_PORT": str(server.port),
        "MYSQL_DATABASE": server.database,
        "MYSQL_ADMIN_PASSWORD": admin_password,
        "LEASE_TTL": "30s",
        "LEASE_MAX_TTL": "2m",
    }
    if request.param == "procedure":  # what MySQL, which has no KILL USER, needs
        settings["MYSQL_KILL_SESSIONS"] = "CALL vault_tools.kill_user_sessions('{{name}}');"
    env = stack.env(include_root_token=True, **settings)
    for attempt in (1, 2):
        done = subprocess.run(["bash", str(SETUP)], env=env, capture_output=True, text=True,
                              timeout=120, check=False)
        assert done.returncode == 0, f"run {attempt}:\n{done.stdout}\n{done.stderr}"
        assert admin_password not in done.stdout + done.stderr
    assert "already enabled" in done.stderr
    env.pop("MYSQL_ADMIN_PASSWORD")
    done = subprocess.run(["bash", str(SETUP)], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "kept" in done.stderr
    return settings


def _provider(target: MySQLTarget, settings: dict[str, str], tmp_path: Path, *, role: str,
              service_account: str) -> CredentialProvider:
    token = target.stack.write_service_account_token(
        tmp_path / service_account / "token", service_account=service_account,
        namespace="app", audiences=("vault",))
    return CredentialProvider(
        role, vault_addr=target.stack.vault_addr, mount=settings["DB_MOUNT"],
        handle_sigterm=False,
        auth=KubernetesAuth(role=role, mount=settings["K8S_AUTH_MOUNT"], token_path=str(token)))


def _connect(target: MySQLTarget, provider: CredentialProvider) -> pymysql.Connection:
    creds = provider.credentials()
    return target.server.connect(creds.username, creds.password, target.server.database)


def test_setup_script_least_privilege_and_revocation_ends_sessions(
        vaultdb_mysql: MySQLTarget, operator_setup: dict[str, str], tmp_path: Path) -> None:
    table = f"t_{uuid.uuid4().hex[:8]}"
    with _provider(vaultdb_mysql, operator_setup, tmp_path, role="app-migrate",
                   service_account="app-migrate") as migrate:
        with _connect(vaultdb_mysql, migrate) as conn, conn.cursor() as cur:
            cur.execute(f"CREATE TABLE {table} (id INT AUTO_INCREMENT PRIMARY KEY, note TEXT)")
        migrate_user = migrate.credentials().username
    assert migrate_user not in vaultdb_mysql.server.users()

    app = _provider(vaultdb_mysql, operator_setup, tmp_path, role="app", service_account="app")
    conn = _connect(vaultdb_mysql, app)
    with conn.cursor() as cur:
        cur.execute(f"INSERT INTO {table} (note) VALUES ('hello')")
        cur.execute(f"SELECT count(*) FROM {table}")
        assert cur.fetchone() == (1,)
        with pytest.raises(pymysql.err.OperationalError) as denied:
            cur.execute(f"DROP TABLE {table}")
        assert denied.value.args[0] == 1142  # ER_TABLEACCESS_DENIED_ERROR
    user = app.credentials().username
    assert vaultdb_mysql.session_users().get(user) == 1
    app.close()
    # The revocation statements dropped the user and ended the session it still had open.
    assert user not in vaultdb_mysql.server.users()
    wait_for(lambda: user not in vaultdb_mysql.session_users(), timeout=10)
    with pytest.raises(pymysql.err.OperationalError):
        conn.cursor().execute("SELECT 1")
    vaultdb_mysql.server.sql(f"DROP TABLE {table}")
