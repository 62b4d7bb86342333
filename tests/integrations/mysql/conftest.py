"""MariaDB tests: one server per session (``vaultdb_mysql``), one Vault role per test."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from vaultdb import CredentialProvider
from vaultdb.testing import MySQLTarget, wait_for


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


def assert_mysql_retired_users_gone(target: MySQLTarget, provider: CredentialProvider,
                                    role: str, seen: set[str], *, at_least: int = 1,
                                    timeout: float = 15.0) -> None:
    """Every user in ``seen`` but the current one is dropped and has no session left."""
    retired = seen - {provider.credentials().username}
    assert len(retired) >= at_least, f"only {len(retired)} retired users, wanted {at_least}"
    wait_for(lambda: not (target.users_of_role(role) & retired), timeout=timeout)
    wait_for(lambda: not (set(target.session_users()) & retired), timeout=timeout)
