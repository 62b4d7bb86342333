"""What differs from PostgreSQL, on a real MariaDB: sessions, grants, DEFINER, name lengths."""

from __future__ import annotations

from collections.abc import Callable

import pymysql
import pytest

from vaultdb import CredentialProvider
from vaultdb.errors import VaultDBError
from vaultdb.testing import MySQLTarget, wait_for


def login(target: MySQLTarget, provider: CredentialProvider) -> pymysql.Connection:
    creds = provider.credentials()
    return target.server.connect(creds.username, creds.password, target.server.database)


def one(conn: pymysql.Connection, query: str) -> object:
    with conn.cursor() as cur:
        cur.execute(query)
        row = cur.fetchone()
    return row[0] if row else None


def test_graceful_stop_drops_the_user_and_ends_its_open_session(
        vaultdb_mysql: MySQLTarget, make_provider: Callable[..., CredentialProvider],
        vaultdb_role_name: str) -> None:
    provider = make_provider(default_ttl=60, max_ttl=120)
    creds = provider.credentials()
    user = creds.username
    conn = login(vaultdb_mysql, provider)
    assert one(conn, "SELECT SUBSTRING_INDEX(USER(), '@', 1)") == user
    assert vaultdb_mysql.users_of_role(vaultdb_role_name) == {user}
    provider.close()
    assert vaultdb_mysql.users_of_role(vaultdb_role_name) == set()
    # KILL USER in the revocation statements: the session that was open is gone too.
    wait_for(lambda: user not in vaultdb_mysql.session_users(), timeout=10)
    with pytest.raises(pymysql.err.OperationalError):
        one(conn, "SELECT 1")
    with pytest.raises(pymysql.err.OperationalError) as refused:
        vaultdb_mysql.server.connect(user, creds.password, vaultdb_mysql.server.database)
    assert refused.value.args[0] == 1045


def test_drop_user_alone_leaves_the_session_working(
        vaultdb_mysql: MySQLTarget, make_provider: Callable[..., CredentialProvider]) -> None:
    """Why the revocation statements kill: without it a revoked user keeps its session."""
    provider = make_provider(default_ttl=60, max_ttl=120,
                             revocation_statements=["DROP USER IF EXISTS '{{name}}'@'%';"])
    user = provider.credentials().username
    conn = login(vaultdb_mysql, provider)
    provider.close()
    assert user not in vaultdb_mysql.server.users()
    assert one(conn, "SELECT 42") == 42  # dropped, yet still connected
    conn.close()


def test_the_next_user_uses_and_alters_what_the_previous_one_created(
        vaultdb_mysql: MySQLTarget, make_provider: Callable[..., CredentialProvider],
        vaultdb_role_name: str) -> None:
    table = f"t_{vaultdb_role_name[1:9]}"
    first = make_provider(default_ttl=60, max_ttl=120)
    with login(vaultdb_mysql, first) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE TABLE {table} (id INT PRIMARY KEY, note VARCHAR(20))")
        cur.execute(f"INSERT INTO {table} VALUES (1, 'first')")
        # A view runs as its DEFINER unless it says otherwise: that user is about to go.
        cur.execute(f"CREATE VIEW {table}_definer AS SELECT note FROM {table}")
        cur.execute(f"CREATE SQL SECURITY INVOKER VIEW {table}_invoker AS SELECT note FROM {table}")
    first.close()  # revoked: the user who created everything is dropped
    second = make_provider(default_ttl=60, max_ttl=120)
    with login(vaultdb_mysql, second) as conn, conn.cursor() as cur:
        cur.execute(f"INSERT INTO {table} VALUES (2, 'second')")
        cur.execute(f"ALTER TABLE {table} ADD COLUMN extra INT")
        cur.execute(f"SELECT count(*) FROM {table}_invoker")
        assert cur.fetchone()[0] == 2
        with pytest.raises(pymysql.err.OperationalError) as gone:
            cur.execute(f"SELECT count(*) FROM {table}_definer")
        # MariaDB 10.11 answers "Access denied for user" (1045); MySQL documents 1449
        # ("The user specified as a definer does not exist").
        assert gone.value.args[0] in (1045, 1449), gone.value
        cur.execute(f"DROP VIEW {table}_definer, {table}_invoker")
        cur.execute(f"DROP TABLE {table}")


def test_default_username_template_fits_mysql_32_characters(
        vaultdb_mysql: MySQLTarget, make_provider: Callable[..., CredentialProvider],
        vaultdb_role_name: str) -> None:
    provider = make_provider(default_ttl=60, max_ttl=120)
    user = provider.credentials().username
    assert len(user) <= 32
    assert user.startswith(f"v-token-{vaultdb_role_name[:10]}-")


@pytest.mark.parametrize(("length", "works"), [(128, True), (129, False)])
def test_mariadb_accepts_128_character_user_names_and_refuses_129(
        vaultdb_mysql: MySQLTarget, vaultdb_role_name: str, length: int, works: bool) -> None:
    """A longer ``username_template`` is fine on MariaDB 10.11 up to 128 characters (MySQL:
    32); past that, Vault cannot create the user and the provider says so."""
    from vaultdb import CredentialProvider, TokenAuth

    connection = f"long{length}"
    template = f'{{{{ printf "v-%s-%s" (.RoleName | truncate 10) (random {length - 13}) }}}}'
    vaultdb_mysql.add_connection(connection, username_template=template)
    vaultdb_mysql.create_role(vaultdb_role_name, connection=connection, default_ttl=60,
                              max_ttl=120)
    provider = CredentialProvider(
        vaultdb_role_name, auth=TokenAuth(token=vaultdb_mysql.create_token()),
        vault_addr=vaultdb_mysql.stack.vault_addr, mount=vaultdb_mysql.mount,
        handle_sigterm=False, fetch_timeout=5)
    with provider:
        if works:
            user = provider.credentials().username
            assert len(user) == length
            login(vaultdb_mysql, provider).close()
        else:
            with pytest.raises(VaultDBError) as refused:
                provider.credentials()
            # Vault passes MariaDB's reason on: the error names what to fix.
            assert "too long for user name" in str(refused.value)
            assert "mysql/creds/" in str(refused.value)
