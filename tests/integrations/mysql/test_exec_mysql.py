"""``vaultdb exec`` hands a MariaDB client its credentials through MYSQL_USER/MYSQL_PWD."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from vaultdb.testing import MySQLTarget


def test_exec_gives_the_mariadb_client_a_dynamic_user_and_revokes_it(
        vaultdb_mysql: MySQLTarget, vaultdb_role_name: str) -> None:
    client = shutil.which("mariadb") or shutil.which("mysql")
    if client is None:
        pytest.fail("the mariadb client is not installed (it comes with mariadb-server)")
    vaultdb_mysql.create_role(vaultdb_role_name, default_ttl=60, max_ttl=120)
    server = vaultdb_mysql.server
    # The client reads MYSQL_HOST, MYSQL_TCP_PORT and MYSQL_PWD from its environment.
    env = vaultdb_mysql.env(VAULT_TOKEN=vaultdb_mysql.create_token(),
                            VAULTDB_ROLE=vaultdb_role_name, MYSQL_TCP_PORT=str(server.port))
    done = subprocess.run(
        [sys.executable, "-m", "vaultdb.cli", "exec", "--user-var", "MYSQL_USER",
         "--password-var", "MYSQL_PWD", "--", "sh", "-c",
         f'{client} --no-defaults -h "$MYSQL_HOST" -P "$MYSQL_TCP_PORT" -u "$MYSQL_USER" -N '
         '-e "SELECT SUBSTRING_INDEX(USER(), \'@\', 1)" "$MYSQL_DATABASE"'],
        env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    user = done.stdout.strip()
    assert user.startswith("v-") and f"-{vaultdb_role_name[:10]}" in user
    assert vaultdb_mysql.users_of_role(vaultdb_role_name) == set()  # revoked at exit
