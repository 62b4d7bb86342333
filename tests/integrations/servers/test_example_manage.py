"""manage.py with a dynamic role: migrations, the test runner, system checks."""

from __future__ import annotations

from vaultdb.testing import database_users_of_role


def test_migrations_leave_objects_to_the_owner_role_and_revocation_succeeds(example):
    # The fixture migrated already (a fresh process with a fresh dynamic user); do it again
    # from zero for this app so the tables are certainly created by a dynamic user.
    assert example.manage("migrate", "visits", "zero", "--noinput").returncode == 0
    done = example.manage("migrate", "--noinput")
    assert done.returncode == 0, done.stderr
    owners = dict(example.stack.sql(
        "SELECT c.relname, pg_get_userbyid(c.relowner) FROM pg_class c "
        "WHERE c.relname IN ('visits_visit', 'django_migrations')"))
    assert owners == {"visits_visit": "app_owner", "django_migrations": "app_owner"}
    # Every migrate process revoked its lease at exit: DROP ROLE worked (no owned objects).
    assert database_users_of_role(example.stack, example.role) == set()
    assert "revoked lease" in done.stderr


def test_test_runner_creates_the_test_database_with_a_test_role(example, vaultdb_role_name):
    stack = example.stack
    test_role = f"t{vaultdb_role_name[1:]}"
    owner = f"{test_role[:20]}_owner"
    stack.sql(f'CREATE ROLE "{owner}" NOLOGIN CREATEDB')
    stack.create_database_role(test_role, default_ttl=6, max_ttl=18, creation_statements=[
        "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' "
        f"VALID UNTIL '{{{{expiration}}}}' IN ROLE \"{owner}\";",
        f"ALTER ROLE \"{{{{name}}}}\" SET role = '{owner}';",
    ])
    done = example.manage("test", "visits", "-v", "2", "--noinput",
                          VAULTDB_TEST_ROLE=test_role, VAULTDB_TEST_SET_ROLE=owner)
    assert done.returncode == 0, done.stdout + done.stderr
    line = next(x for x in done.stdout.splitlines() if x.startswith("VAULTDB-TEST-USER"))
    _, session_user, current_user = line.split()
    assert f"-{test_role[:8]}-" in session_user and current_user == owner
    # Test database dropped, and every lease (app role and test role) revoked at exit.
    assert not stack.sql("SELECT 1 FROM pg_database WHERE datname LIKE 'test_%'")
    assert database_users_of_role(stack, test_role) == set()
    assert database_users_of_role(stack, example.role) == set()


def test_check_validates_settings_without_vault_and_deploy_checks_live(example):
    ok = example.manage("check")
    assert ok.returncode == 0, ok.stderr
    assert database_users_of_role(example.stack, example.role) == set()
    broken = example.manage("check", VAULTDB_AUTH_ROLE="", VAULTDB_DRAIN_SECONDS="soon")
    assert broken.returncode != 0
    assert "vaultdb.E001" in broken.stderr
    live = example.manage("check", "--deploy", "--fail-level", "ERROR")
    assert live.returncode == 0, live.stderr
    bad = example.manage("check", "--deploy", VAULTDB_AUTH_ROLE="no-such-role")
    assert bad.returncode != 0
    assert "vaultdb.E010" in bad.stderr and "live Vault check failed" in bad.stderr
    assert database_users_of_role(example.stack, example.role) == set()
