"""MariaDB tests: one server per session (``vaultdb_mysql``), one Vault role per test."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from vaultdb import CredentialProvider
from vaultdb.testing import MySQLTarget


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

