"""``is_auth_failure`` on errors a real MariaDB returns, through every MySQL driver tested."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiomysql
import pymysql
import pytest
import sqlalchemy
from sqlalchemy import text
from vaultdb.integrations._common import is_auth_failure

from vaultdb.testing import MySQLTarget
from vaultdb.testing._ports import free_port


def _pymysql(**kw: object) -> None:
    pymysql.connect(**kw).close()  # type: ignore[arg-type]


def _mysqldb(**kw: object) -> None:
    import MySQLdb

    kw = dict(kw)
    kw["database"] = kw.pop("database", None) or ""
    MySQLdb.connect(**kw).close()


def _aiomysql(**kw: object) -> None:
    kw = dict(kw)
    if "database" in kw:
        kw["db"] = kw.pop("database")

    async def go() -> None:
        conn = await aiomysql.connect(**kw)
        conn.close()

    asyncio.run(go())


DRIVERS = {"pymysql": _pymysql, "mysqlclient": _mysqldb, "aiomysql": _aiomysql}


@pytest.fixture(scope="module")
def accounts(vaultdb_mysql: MySQLTarget) -> dict[str, str]:
    server = vaultdb_mysql.server
    server.sql("CREATE USER IF NOT EXISTS 'af_ok'@'%' IDENTIFIED BY 'pw'")
    server.sql("GRANT ALL ON `app`.* TO 'af_ok'@'%'")
    server.sql("CREATE USER IF NOT EXISTS 'af_locked'@'%' IDENTIFIED BY 'pw' ACCOUNT LOCK")
    # A grant on a database that does not exist: connecting to it is 1049, not 1044.
    server.sql("GRANT ALL ON `af_no_such_db`.* TO 'af_ok'@'%'")
    return {"ok": "af_ok", "locked": "af_locked"}


def error_of(connect: Callable[..., None], **kw: object) -> BaseException:
    with pytest.raises(Exception) as caught:
        connect(**kw)
    return caught.value


@pytest.mark.parametrize("driver", list(DRIVERS))
def test_refused_logins_are_auth_failures_and_others_are_not(
        vaultdb_mysql: MySQLTarget, accounts: dict[str, str], driver: str) -> None:
    server = vaultdb_mysql.server
    connect = DRIVERS[driver]
    at = {"host": server.host, "port": server.port}
    cases = {
        "wrong password (1045)": (dict(user="af_ok", password="nope"), True),
        "dropped user (1045)": (dict(user="af_no_such_user", password="pw"), True),
        "database not granted (1044)": (dict(user="af_ok", password="pw", database="mysql"),
                                        True),
        "locked account (4151)": (dict(user="af_locked", password="pw"), True),
        # Not the credentials: a database that does not exist, nothing listening.
        "unknown database (1049)": (dict(user="af_ok", password="pw",
                                         database="af_no_such_db"), False),
    }
    errors = {name: (error_of(connect, **at, **kw), want) for name, (kw, want) in cases.items()}
    errors["connection refused (2003)"] = (
        error_of(connect, host="127.0.0.1", port=free_port(), user="af_ok", password="pw"),
        False)
    for name, (error, want) in errors.items():
        assert is_auth_failure(error) is want, f"{name}: {error!r}"


def test_sqlalchemy_wrapped_refusal_is_an_auth_failure(
        vaultdb_mysql: MySQLTarget, accounts: dict[str, str]) -> None:
    server = vaultdb_mysql.server
    engine = sqlalchemy.create_engine(
        f"mysql+pymysql://af_ok:nope@{server.host}:{server.port}/app")
    with pytest.raises(sqlalchemy.exc.OperationalError) as caught:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    assert is_auth_failure(caught.value)
    engine.dispose()
