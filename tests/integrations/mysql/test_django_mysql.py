"""The Django MySQL ENGINE on a real MariaDB: migrations, the test runner, checks, rotation.

Each test runs ``manage.py`` of a small project (``djproj/``) in a fresh process, as a
deployment would, with mysqlclient (Django's recommended driver) and with PyMySQL's MySQLdb
shim.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vaultdb.testing import MySQLTarget, default_mysql_creation_statements

PROJECT = Path(__file__).resolve().parent / "djproj"
#: The app schema, plus the test databases Django's runner creates (test_<NAME>).
CREATION = [*default_mysql_creation_statements("app"),
            r"GRANT ALL PRIVILEGES ON `test\_%`.* TO '{{name}}'@'%';"]
DRIVERS = [pytest.param("0", id="mysqlclient"), pytest.param("1", id="pymysql-shim")]


class Project:
    def __init__(self, target: MySQLTarget, role: str, pymysql: str) -> None:
        self.target = target
        self.role = role
        self.driver = "pymysql" if pymysql == "1" else "MySQLdb"
        self.env = target.env(VAULT_TOKEN=target.create_token(), VAULTDB_ROLE=role,
                              VAULTDB_DRAIN_SECONDS="1", VAULTDB_REVOKE_TIMEOUT="5",
                              DJANGO_SETTINGS_MODULE="settings_mysql", PYTHONPATH=str(PROJECT),
                              PYTHONUNBUFFERED="1", DJPROJ_PYMYSQL=pymysql)

    def manage(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "manage.py", *args], cwd=PROJECT,
                              env={**self.env, **env}, capture_output=True, text=True,
                              timeout=180)

    def users(self) -> set[str]:
        return self.target.users_of_role(self.role)


@pytest.fixture(params=DRIVERS)
def project(request: pytest.FixtureRequest, vaultdb_mysql: MySQLTarget,
            vaultdb_role_name: str) -> Project:
    vaultdb_mysql.create_role(vaultdb_role_name, default_ttl=6, max_ttl=18,
                              creation_statements=CREATION)
    return Project(vaultdb_mysql, vaultdb_role_name, request.param)


def tables(target: MySQLTarget) -> set[str]:
    return {str(r[0]) for r in target.server.sql("SHOW TABLES")}


def test_migrations_run_with_dynamic_users_and_leave_nothing_behind(project: Project) -> None:
    done = project.manage("migrate", "--noinput")
    assert done.returncode == 0, done.stderr
    assert {"notes_note", "django_migrations"} <= tables(project.target)
    # Another process, another dynamic user: it alters (drops) what the first one created.
    undone = project.manage("migrate", "notes", "zero", "--noinput")
    assert undone.returncode == 0, undone.stderr
    assert "notes_note" not in tables(project.target)
    again = project.manage("migrate", "--noinput")
    assert again.returncode == 0, again.stderr
    # Every process revoked its lease at exit: no user left, no session left.
    assert project.users() == set()
    assert not any(u.startswith("v-") for u in project.target.session_users())
    assert "revoked lease" in again.stderr


def test_persistent_connections_follow_rotations_without_errors(project: Project) -> None:
    assert project.manage("migrate", "--noinput").returncode == 0
    # Short leases from here on: each rotates about 4.5 s after it was issued.
    project.target.create_role(project.role, default_ttl=4, max_ttl=6,
                               creation_statements=CREATION)
    done = project.manage("requests", "--users", "3", "--timeout", "90")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.split("RESULT ", 1)[1])
    assert result["errors"] == []
    assert result["driver"].startswith(project.driver + ".")
    assert len(result["users"]) == 3, result  # two rotations seen by one process
    assert project.users() == set()  # the process revoked its lease at exit
    assert not set(result["users"]) & set(project.target.session_users())


def test_test_runner_creates_and_drops_the_test_database(project: Project) -> None:
    done = project.manage("test", "notes", "-v", "2", "--noinput")
    assert done.returncode == 0, done.stdout + done.stderr
    line = next(x for x in done.stdout.splitlines() if x.startswith("VAULTDB-TEST-USER"))
    assert f"-{project.role[:10]}" in line
    assert not project.target.server.sql("SHOW DATABASES LIKE 'test\\_%'")
    assert project.users() == set()


def test_check_validates_settings_and_deploy_checks_live(project: Project) -> None:
    ok = project.manage("check", "--deploy", "--fail-level", "ERROR")
    assert ok.returncode == 0, ok.stderr
    bad = project.manage("check", "--deploy", VAULTDB_ROLE="no-such-role")
    assert bad.returncode != 0
    assert "vaultdb.E010" in bad.stderr
    assert project.users() == set()


def test_dbshell_runs_the_client_with_the_current_credentials(project: Project) -> None:
    if shutil.which("mysql") is None:
        pytest.fail("the mysql client is not installed (it comes with mariadb-server)")
    done = project.manage("dbshell", "--", "-N", "-e", "SELECT SUBSTRING_INDEX(USER(), '@', 1)")
    assert done.returncode == 0, done.stderr
    user = done.stdout.strip()
    assert user.startswith("v-") and f"-{project.role[:10]}" in user
    assert project.users() == set()  # revoked when the command exited
