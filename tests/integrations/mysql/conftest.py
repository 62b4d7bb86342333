"""MariaDB tests: one server per session (``vaultdb_mysql``), one Vault role per test."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from vaultdb import CredentialProvider
from vaultdb.testing import MySQLTarget


@pytest.fixture(autouse=True)
def _mysqlclient_when_needed(request: pytest.FixtureRequest) -> None:
    """mysqlclient builds from source (C library headers), so it is an extra of its own:
    its tests skip without it, and fail in CI, which installs it."""
    from vaultdb.testing.pytest_plugin import require_import

    callspec = getattr(request.node, "callspec", None)
    params = " ".join(str(v) for v in (callspec.params.values() if callspec else ()))
    if "mysqldb" in params.lower() or "mysqlclient" in request.node.name:
        require_import("MySQLdb", "pip install 'vaultdb-creds[mysqlclient]'; it needs "
                       "default-libmysqlclient-dev and pkg-config")


@pytest.fixture
def make_provider(vaultdb_mysql_provider_factory: Callable[..., CredentialProvider]
                  ) -> Callable[..., CredentialProvider]:
    """Token login, 4 s / 6 s leases on the ``mysql`` mount (rotation about every 4.5 s)."""
    return vaultdb_mysql_provider_factory


@pytest.fixture
def mysql_url(vaultdb_mysql: MySQLTarget) -> Callable[[str], str]:
    """``mysql_url("mysql+pymysql")``: a URL without user or password."""
    server = vaultdb_mysql.server
    return lambda driver: f"{driver}://{server.host}:{server.port}/{server.database}"

