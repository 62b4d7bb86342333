"""pytest plugin (entry point ``vaultdb``): fixtures for the real OpenBao + PostgreSQL stack
(and MariaDB on demand: ``vaultdb_mysql``).

Loaded by every pytest run in an environment where vaultdb is installed, so importing it must
be side-effect free and cheap: nothing starts until a test requests ``vaultdb_stack``, and the
stack module (with its heavier dependencies) is imported only then.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from vaultdb import CredentialProvider
    from vaultdb.testing import MySQLTarget, VaultDBStack, VaultRedis

__all__ = [
    "vaultdb_cluster",
    "vaultdb_cluster_session",
    "vaultdb_mysql",
    "vaultdb_mysql_provider_factory",
    "vaultdb_provider_factory",
    "vaultdb_redis",
    "vaultdb_role_name",
    "vaultdb_stack",
    "vaultdb_tls_stack",
]


@pytest.fixture(scope="session")
def vaultdb_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VaultDBStack]:
    """One running, configured stack per test session (so per pytest-xdist worker).

    Each xdist worker has its own ``tmp_path_factory`` base directory and picks free ports,
    so workers never share servers or files. Logs stay in the workdir for post-mortems.
    """
    from vaultdb.testing import VaultDBStack

    workdir = tmp_path_factory.mktemp("vaultdb-stack")
    with VaultDBStack.start(workdir=workdir) as stack:
        yield stack


@pytest.fixture(scope="session")
def vaultdb_tls_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VaultDBStack]:
    """Like ``vaultdb_stack``, with OpenBao on https (its CA in ``stack.vault.ca_cert``) and
    the ``cert`` auth method enabled (``stack.create_cert_role``). Started on first use only."""
    from vaultdb.testing import VaultDBStack

    workdir = tmp_path_factory.mktemp("vaultdb-tls-stack")
    with VaultDBStack.start(workdir=workdir, tls=True) as stack:
        yield stack


@pytest.fixture(scope="session")
def vaultdb_cluster_session(
    vaultdb_stack: VaultDBStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[VaultDBStack]:
    """One 3-node OpenBao Raft cluster per test session, configured like ``vaultdb_stack``.

    Starting a cluster takes about 12 s (every node must become a Raft voter), so all the
    tests of a session (of an xdist worker) share it. It shares PostgreSQL and the Kubernetes
    stand-in with ``vaultdb_stack``. Prefer ``vaultdb_cluster``, which heals the cluster after
    each test.
    """
    from vaultdb.testing import VaultCluster, VaultDBStack

    workdir = tmp_path_factory.mktemp("vaultdb-cluster")
    with VaultCluster(workdir / "nodes") as cluster:
        cluster.start()
        with VaultDBStack.start(workdir / "stack", vault=cluster,
                                postgres=vaultdb_stack.postgres, kube=vaultdb_stack.kube) as stack:
            yield stack


@pytest.fixture
def vaultdb_cluster(vaultdb_cluster_session: VaultDBStack) -> Iterator[VaultDBStack]:
    """The session's cluster stack, healed after the test (every node up and voting again).

    ``vaultdb_cluster.vault_addr`` is the round-robin balancer in front of every node;
    ``vaultdb_cluster.cluster`` is the :class:`~vaultdb.testing.VaultCluster` with the fault
    helpers (``leader()``, ``kill()``, ``pause()``, ``step_down()``, ``restart()``, ``roll()``).
    """
    cluster = vaultdb_cluster_session.cluster
    cluster.wait_ready()
    yield vaultdb_cluster_session
    cluster.heal()


@pytest.fixture
def vaultdb_role_name(request: pytest.FixtureRequest) -> str:
    """A role name unique to this test, so tests sharing one stack never collide.

    Vault's PostgreSQL username template keeps only the first 8 characters of the role name,
    so the random part comes first to keep generated usernames distinguishable.
    """
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:24]
    return f"r{uuid.uuid4().hex[:8]}-{slug}".rstrip("-")


@pytest.fixture
def vaultdb_provider_factory(
    vaultdb_stack: VaultDBStack, vaultdb_role_name: str, tmp_path: Path
) -> Iterator[Callable[..., CredentialProvider]]:
    """Build providers for this test's database role on the stack; all closed at teardown.

    ``make(default_ttl=4, max_ttl=6, drain_seconds=1.0, login="token", token_ttl=600,
    token_max_ttl=0, role_kwargs=None, **provider_kwargs)`` creates the database role
    ``vaultdb_role_name`` and returns a provider for it. ``login="token"`` logs in with a token
    holding the app policy; ``login="kubernetes"`` with a Kubernetes auth role of the same name
    and the service-account token file ``tmp_path / "sa" / "token"`` (written if missing).
    With 4 s / 6 s TTLs the first renewal is capped, so each lease rotates about 4.5 s after
    it was issued: rotations are observable in seconds.
    """
    from vaultdb import CredentialProvider, KubernetesAuth, TokenAuth

    made: list[CredentialProvider] = []

    def make(*, default_ttl: int = 4, max_ttl: int = 6, drain_seconds: float = 1.0,
             login: str = "token", token_ttl: int = 600, token_max_ttl: int = 0,
             role_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> CredentialProvider:
        role = vaultdb_role_name
        vaultdb_stack.create_database_role(role, default_ttl=default_ttl, max_ttl=max_ttl,
                                           **(role_kwargs or {}))
        if "auth" not in kwargs and login == "kubernetes":
            vaultdb_stack.create_kubernetes_role(role, token_ttl=token_ttl,
                                                 token_max_ttl=token_max_ttl)
            token_path = tmp_path / "sa" / "token"
            if not token_path.exists():
                vaultdb_stack.write_service_account_token(token_path)
            kwargs["auth"] = KubernetesAuth(role=role, token_path=str(token_path))
        elif "auth" not in kwargs:
            kwargs["auth"] = TokenAuth(token=vaultdb_stack.create_token(ttl=token_ttl))
        kwargs.setdefault("handle_sigterm", False)
        kwargs.setdefault("vault_addr", vaultdb_stack.vault_addr)  # or a proxy in front of it
        provider = CredentialProvider(role, drain_seconds=drain_seconds, **kwargs)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        provider.close()


def require_import(module: str, hint: str) -> None:
    """Skip the test when ``module`` cannot be imported; fail instead under CI's
    ``VAULTDB_REQUIRE_SERVERS=1`` (it installs every optional driver)."""
    import importlib

    try:
        importlib.import_module(module)
    except ImportError:
        server_unavailable(f"{module} is not installed ({hint})")


def server_unavailable(reason: str) -> None:
    """Skip the test, or fail it when ``VAULTDB_REQUIRE_SERVERS=1`` (CI installs every server)."""
    if os.environ.get("VAULTDB_REQUIRE_SERVERS") == "1":
        pytest.fail(f"{reason} (VAULTDB_REQUIRE_SERVERS=1: every server must be installed)",
                    pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def vaultdb_redis(request: pytest.FixtureRequest) -> Iterator[VaultRedis]:
    """A real ``redis-server`` with ACLs, known to the stack's OpenBao as ``database/config/redis``.

    One per test session (per xdist worker), sharing ``vaultdb_stack``'s OpenBao. Create roles
    with ``vaultdb_redis.create_role(name, acl_rules=["~*", "&*", "+@all"], default_ttl=4,
    max_ttl=6)``. Skipped when no ``redis-server`` (or redis-py) is installed, failed instead
    under ``VAULTDB_REQUIRE_SERVERS=1``.
    """
    from vaultdb.testing._redis import VaultRedis, find_redis_server

    if find_redis_server() is None:
        server_unavailable("no redis-server installed (apt-get install redis-server, or set "
                           "VAULTDB_REDIS_SERVER)")
    try:
        import redis  # noqa: F401
    except ImportError:
        server_unavailable("redis-py is not installed (pip install 'vaultdb-creds[redis]')")
    kit = VaultRedis.start(request.getfixturevalue("vaultdb_stack"))
    try:
        yield kit
    finally:
        kit.close()


@pytest.fixture(scope="session")
def vaultdb_mysql(vaultdb_stack: VaultDBStack) -> Iterator[MySQLTarget]:
    """One MariaDB server per test session, served by the stack's OpenBao (mount ``mysql``).

    Skips the test when no MariaDB server is installed; with ``VAULTDB_REQUIRE_SERVERS=1``
    (CI) that is a failure instead.
    """
    from vaultdb.testing import MySQLTarget
    from vaultdb.testing._mysql import find_mariadbd

    try:
        find_mariadbd()
    except FileNotFoundError as exc:
        server_unavailable(str(exc))
    target = MySQLTarget.start(vaultdb_stack)
    yield target
    target.close()


@pytest.fixture
def vaultdb_mysql_provider_factory(
    vaultdb_mysql: MySQLTarget, vaultdb_role_name: str
) -> Iterator[Callable[..., CredentialProvider]]:
    """Like ``vaultdb_provider_factory``, for a MariaDB role on the ``mysql`` mount.

    ``make(default_ttl=4, max_ttl=6, drain_seconds=1.0, creation_statements=None,
    revocation_statements=None, **provider_kwargs)``; token login with the app policy.
    """
    from vaultdb import CredentialProvider, TokenAuth

    made: list[CredentialProvider] = []

    def make(*, default_ttl: int = 4, max_ttl: int = 6, drain_seconds: float = 1.0,
             creation_statements: list[str] | None = None,
             revocation_statements: list[str] | None = None,
             **kwargs: Any) -> CredentialProvider:
        role = vaultdb_role_name
        vaultdb_mysql.create_role(role, default_ttl=default_ttl, max_ttl=max_ttl,
                                  creation_statements=creation_statements,
                                  revocation_statements=revocation_statements)
        kwargs.setdefault("auth", TokenAuth(token=vaultdb_mysql.create_token()))
        kwargs.setdefault("handle_sigterm", False)
        provider = CredentialProvider(role, vault_addr=vaultdb_mysql.stack.vault_addr,
                                      mount=vaultdb_mysql.mount, drain_seconds=drain_seconds,
                                      **kwargs)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        provider.close()
