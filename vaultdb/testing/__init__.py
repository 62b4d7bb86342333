"""Real OpenBao + PostgreSQL stack for tests (+ Kubernetes TokenReview stand-in, MariaDB, Redis).

``from vaultdb.testing import VaultDBStack`` gives a fully configured, disposable
environment; see :class:`VaultDBStack`. Importing this package is cheap: the submodules (and
their heavier dependencies) load on first attribute access, so the pytest plugin and
``import vaultdb`` stay light when the testing extras are not even installed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._baoproxy import BaoProxy
    from ._certs import CertificateAuthority
    from ._cluster import ClusterError, ClusterNode, VaultCluster
    from ._faultproxy import FaultProxy
    from ._helpers import (
        assert_retired_users_gone,
        database_users_of_role,
        revoked_usernames,
        wait_for,
    )
    from ._kubernetes import KubernetesStandIn
    from ._lb import RoundRobinBalancer
    from ._mysql import (
        MYSQL_POLICY,
        MariaDBServer,
        MySQLTarget,
        default_mysql_creation_statements,
        default_mysql_revocation_statements,
    )
    from ._openbao import OpenBaoServer
    from ._postgres import ConnInfo, PostgresServer
    from ._redis import RedisServer, VaultRedis
    from ._stack import (
        APP_POLICY,
        APP_POLICY_HCL,
        VaultDBStack,
        VaultEndpoint,
        default_creation_statements,
        default_revocation_statements,
    )

__all__ = [
    "APP_POLICY",
    "APP_POLICY_HCL",
    "MYSQL_POLICY",
    "BaoProxy",
    "CertificateAuthority",
    "ClusterError",
    "ClusterNode",
    "ConnInfo",
    "FaultProxy",
    "KubernetesStandIn",
    "MariaDBServer",
    "MySQLTarget",
    "OpenBaoServer",
    "PostgresServer",
    "RedisServer",
    "RoundRobinBalancer",
    "VaultCluster",
    "VaultDBStack",
    "VaultEndpoint",
    "VaultRedis",
    "assert_retired_users_gone",
    "database_users_of_role",
    "default_creation_statements",
    "default_mysql_creation_statements",
    "default_mysql_revocation_statements",
    "default_revocation_statements",
    "revoked_usernames",
    "wait_for",
]

_LOCATIONS = {
    "APP_POLICY": "._stack",
    "APP_POLICY_HCL": "._stack",
    "default_creation_statements": "._stack",
    "default_revocation_statements": "._stack",
    "VaultDBStack": "._stack",
    "BaoProxy": "._baoproxy",
    "CertificateAuthority": "._certs",
    "VaultEndpoint": "._stack",
    "ClusterError": "._cluster",
    "ClusterNode": "._cluster",
    "VaultCluster": "._cluster",
    "RoundRobinBalancer": "._lb",
    "ConnInfo": "._postgres",
    "PostgresServer": "._postgres",
    "OpenBaoServer": "._openbao",
    "KubernetesStandIn": "._kubernetes",
    "MYSQL_POLICY": "._mysql",
    "MariaDBServer": "._mysql",
    "MySQLTarget": "._mysql",
    "default_mysql_creation_statements": "._mysql",
    "default_mysql_revocation_statements": "._mysql",
    "FaultProxy": "._faultproxy",
    "RedisServer": "._redis",
    "VaultRedis": "._redis",
    "assert_retired_users_gone": "._helpers",
    "database_users_of_role": "._helpers",
    "revoked_usernames": "._helpers",
    "wait_for": "._helpers",
}


def __getattr__(name: str) -> Any:
    module = _LOCATIONS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
