"""The whole test stack: OpenBao + PostgreSQL + Kubernetes stand-in, configured by an operator.

Everything here is done the way an operator would do it against a real deployment (database
secrets engine with a verified connection, auth methods, a least-privilege app policy), so
tests exercise the same Vault behaviour production sees -- just on 127.0.0.1 and disposable.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import logging
import os
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from ._kubernetes import KubernetesStandIn
from ._openbao import OpenBaoServer
from ._postgres import PostgresServer
from ._procs import Watchdog

if TYPE_CHECKING:
    import hvac

    from ._cluster import VaultCluster

__all__ = [
    "APP_POLICY",
    "APP_POLICY_HCL",
    "VaultDBStack",
    "VaultEndpoint",
    "default_creation_statements",
    "default_revocation_statements",
]

logger = logging.getLogger(__name__)

APP_POLICY = "vaultdb-app"
"""Name of the least-privilege policy an application using vaultdb needs."""

APP_POLICY_HCL = """\
# Fetch dynamic and static database credentials.
path "database/creds/*" {
  capabilities = ["read"]
}
path "database/static-creds/*" {
  capabilities = ["read"]
}
# Manage the leases of those credentials.
path "sys/leases/renew" {
  capabilities = ["update"]
}
path "sys/leases/revoke" {
  capabilities = ["update"]
}
path "sys/leases/lookup" {
  capabilities = ["update"]
}
# Token self-management (lookup-self, renew-self, revoke-self) comes from "default".
"""


def default_creation_statements(database: str = "app", owner: str = "app_owner") -> list[str]:
    """Creation statements used by :meth:`VaultDBStack.create_database_role` by default.

    Dynamic users join the owner role and act as it (``SET role``), so every object they
    create is owned by the stable owner role and ``DROP ROLE`` on revocation cannot fail
    because of owned objects.
    """
    return [
        "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' "
        f"VALID UNTIL '{{{{expiration}}}}' IN ROLE \"{owner}\";",
        f"ALTER ROLE \"{{{{name}}}}\" SET role = '{owner}';",
        f'GRANT CONNECT ON DATABASE "{database}" TO "{{{{name}}}}";',
    ]


def default_revocation_statements(database: str = "app") -> list[str]:
    """Revocation statements used by default: kill sessions, drop grants, drop the user.

    The ``REVOKE`` matters: the CONNECT grant from creation would otherwise make
    ``DROP ROLE`` fail with "role ... cannot be dropped because some objects depend on it".
    """
    return [
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{{name}}';",
        f'REVOKE ALL ON DATABASE "{database}" FROM "{{{{name}}}}";',
        'DROP ROLE IF EXISTS "{{name}}";',
    ]


class VaultEndpoint(Protocol):
    """What a stack needs of its Vault: an address, a root token and a client.

    :class:`~vaultdb.testing.OpenBaoServer` (one dev server) and
    :class:`~vaultdb.testing.VaultCluster` (a Raft cluster) both are one.
    """

    @property
    def addr(self) -> str: ...

    @property
    def root_token(self) -> str: ...

    @property
    def ca_cert(self) -> Path | None: ...

    def client(self, token: str | None = None, *, timeout: float = 10) -> hvac.Client: ...


_MOUNT_DB = "database"
_MOUNT_K8S = "kubernetes"
_MOUNT_JWT = "jwt"
_MOUNT_APPROLE = "approle"
_MOUNT_CERT = "cert"
_REVIEWER_SA = ("vault", "vault-auth")


def _as_list(value: str | Iterable[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _ttl(value: int | str) -> str:
    return f"{value}s" if isinstance(value, int) else value


class VaultDBStack:
    """Running OpenBao + PostgreSQL + Kubernetes stand-in, wired together.

    Use :meth:`start` (or the ``vaultdb_stack`` pytest fixture). Every ``create_*``/
    ``write_policy`` call is remembered so :meth:`restart_vault` can rebuild the same
    configuration on a fresh, empty server -- what a persistent Vault would have kept.

    Any part can be given instead of started: ``vault`` (any :class:`VaultEndpoint`, e.g. a
    running :class:`~vaultdb.testing.VaultCluster`), ``postgres`` and ``kube`` (running
    servers, typically another stack's, so two stacks share one PostgreSQL). Given parts are
    configured but never started or stopped by this stack.
    """

    def __init__(
        self,
        workdir: str | os.PathLike[str] | None = None,
        *,
        tls: bool = False,
        vault: VaultEndpoint | None = None,
        postgres: PostgresServer | None = None,
        kube: KubernetesStandIn | None = None,
    ) -> None:
        self._owns_workdir = workdir is None
        self.workdir = Path(
            tempfile.mkdtemp(prefix="vaultdb-stack-") if workdir is None else workdir
        ).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._replay: list[tuple[Callable[..., Any], dict[str, Any]]] = []
        self._closed = False
        self._watchdog = Watchdog()
        if self._owns_workdir:
            self._watchdog.watch_dir(self.workdir)  # temp dir: gone even after a crash
        self._owned = {"vault": vault is None, "postgres": postgres is None,
                       "kube": kube is None}
        self.kube = kube or KubernetesStandIn(self.workdir / "kubernetes")
        #: With ``tls``, OpenBao serves https (``-dev-tls``) and the ``cert`` auth method is on.
        self.tls = tls
        self.vault: VaultEndpoint = vault or OpenBaoServer(self.workdir / "openbao",
                                                           watchdog=self._watchdog, tls=tls)
        self.postgres = postgres or PostgresServer(self.workdir, watchdog=self._watchdog)
        self.started_in: float | None = None

    @classmethod
    def start(
        cls,
        workdir: str | os.PathLike[str] | None = None,
        *,
        tls: bool = False,
        vault: VaultEndpoint | None = None,
        postgres: PostgresServer | None = None,
        kube: KubernetesStandIn | None = None,
    ) -> VaultDBStack:
        """Start the servers not given and configure Vault; cleans up if anything fails."""
        stack = cls(workdir, tls=tls, vault=vault, postgres=postgres, kube=kube)
        atexit.register(stack.close)
        try:
            stack._start()
        except BaseException:
            stack.close()
            raise
        return stack

    def _start(self) -> None:
        began = time.monotonic()
        if self._owned["kube"]:
            self.kube.start()
        # OpenBao and initdb+PostgreSQL are independent; overlapping them halves start-up.
        starts: list[Callable[[], None]] = []
        if isinstance(self.vault, OpenBaoServer) and self._owned["vault"]:
            starts.append(self.vault.start)
        if self._owned["postgres"]:
            starts.append(self.postgres.start)
        with concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="vaultdb-start") as ex:
            futures = [ex.submit(start) for start in starts]
            for fut in futures:
                fut.result()
        self._configure()
        self.started_in = time.monotonic() - began
        logger.info("vaultdb test stack ready in %.2fs (workdir %s)", self.started_in, self.workdir)

    def __enter__(self) -> VaultDBStack:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"VaultDBStack(vault_addr={self.vault_addr!r}, "
            f"postgres='{self.postgres.host}:{self.postgres.port}/{self.postgres.database}', "
            f"kube={self.kube.url!r}, workdir='{self.workdir}')"
        )

    def close(self) -> None:
        """Stop everything. Idempotent; also runs at interpreter exit."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        atexit.unregister(self.close)
        steps: list[Callable[[], None]] = []
        if isinstance(self.vault, OpenBaoServer) and self._owned["vault"]:
            steps.append(self.vault.stop)
        if self._owned["postgres"]:
            steps.append(self.postgres.cleanup)
        if self._owned["kube"]:
            steps.append(self.kube.stop)
        for step in (*steps, self._watchdog.close):
            try:
                step()
            except Exception:
                logger.exception("error while stopping the vaultdb test stack")
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # ---------------------------------------------------------------- accessors

    @property
    def vault_addr(self) -> str:
        return self.vault.addr

    @property
    def root_token(self) -> str:
        return self.vault.root_token

    @property
    def cluster(self) -> VaultCluster:
        """The :class:`~vaultdb.testing.VaultCluster` this stack runs on (``TypeError`` if
        its Vault is a single dev server)."""
        from ._cluster import VaultCluster

        if not isinstance(self.vault, VaultCluster):
            raise TypeError("this stack runs on one OpenBao dev server, not a cluster")
        return self.vault

    def root_client(self) -> hvac.Client:
        """hvac client authenticated with the root token (timeout 10 s)."""
        return self.vault.client(timeout=10)

    def env(self, *, include_root_token: bool = False, **extra: str) -> dict[str, str]:
        """Environment for child processes: ``os.environ`` plus the stack's addresses.

        Inherited ``VAULT_TOKEN``/``BAO_TOKEN`` are removed so a child never silently uses a
        developer's real token; the root token is only added when explicitly requested.
        """
        env = {k: v for k, v in os.environ.items() if k not in ("VAULT_TOKEN", "BAO_TOKEN")}
        env.update(
            {
                "VAULT_ADDR": self.vault_addr,
                "BAO_ADDR": self.vault_addr,
                "PGHOST": self.postgres.host,
                "PGPORT": str(self.postgres.port),
                "PGDATABASE": self.postgres.database,
                "VAULTDB_TEST_KUBERNETES_HOST": self.kube.url,
            }
        )
        if self.vault.ca_cert is not None:
            env["VAULT_CACERT"] = env["BAO_CACERT"] = str(self.vault.ca_cert)
        if include_root_token:
            env["VAULT_TOKEN"] = self.root_token
            env["BAO_TOKEN"] = self.root_token
        env.update(extra)
        return env

    # ---------------------------------------------------------------- configuration

    def _write(self, path: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        result = self.root_client().write_data(path, data=data or {})
        return result if isinstance(result, dict) else {}

    def _configure(self) -> None:
        """Base operator configuration, then replay of everything created so far."""
        client = self.root_client()
        client.sys.create_or_update_policy(name=APP_POLICY, policy=APP_POLICY_HCL)
        client.sys.enable_secrets_engine(backend_type="database", path=_MOUNT_DB)
        pg = self.postgres
        self._write(
            f"{_MOUNT_DB}/config/postgres",
            {
                "plugin_name": "postgresql-database-plugin",
                "connection_url": (
                    f"postgresql://{{{{username}}}}:{{{{password}}}}@{pg.host}:{pg.port}/"
                    f"{pg.database}?sslmode=disable"
                ),
                "username": pg.superuser,
                "password": pg.superuser_password,
                "allowed_roles": "*",
                "verify_connection": True,
            },
        )
        client.sys.enable_auth_method(method_type="kubernetes", path=_MOUNT_K8S)
        reviewer = self.kube.issue_token(*_REVIEWER_SA[::-1], ttl=365 * 86400)
        self._write(
            f"auth/{_MOUNT_K8S}/config",
            {
                "kubernetes_host": self.kube.url,
                "kubernetes_ca_cert": self.kube.ca_pem,
                "token_reviewer_jwt": reviewer,
                "disable_local_ca_jwt": True,
            },
        )
        client.sys.enable_auth_method(method_type="jwt", path=_MOUNT_JWT)
        self._write(
            f"auth/{_MOUNT_JWT}/config",
            {
                "jwt_validation_pubkeys": [self.kube.public_key_pem],
                "bound_issuer": self.kube.issuer,
            },
        )
        client.sys.enable_auth_method(method_type="approle", path=_MOUNT_APPROLE)
        if self.tls:
            client.sys.enable_auth_method(method_type="cert", path=_MOUNT_CERT)
        with self._lock:
            replay = list(self._replay)
        for func, kwargs in replay:
            func(**kwargs)

    def _record(self, func: Callable[..., Any], **kwargs: Any) -> Any:
        result = func(**kwargs)
        with self._lock:
            self._replay.append((func, kwargs))
        return result

    def write_policy(self, name: str, hcl: str) -> None:
        """Create or replace a Vault policy."""
        self._record(self._do_write_policy, name=name, hcl=hcl)

    def _do_write_policy(self, name: str, hcl: str) -> None:
        self.root_client().sys.create_or_update_policy(name=name, policy=hcl)

    def create_database_role(
        self,
        name: str,
        *,
        default_ttl: int | str = 3,
        max_ttl: int | str = 9,
        creation_statements: Sequence[str] | str | None = None,
        revocation_statements: Sequence[str] | str | None = None,
        mount: str = _MOUNT_DB,
    ) -> None:
        """Dynamic-credential role ``<mount>/roles/<name>`` (short TTLs by default).

        The tiny default TTLs (3 s / 9 s) make renewal and expiry observable in tests.
        """
        pg = self.postgres
        creation = (
            default_creation_statements(pg.database, pg.owner_role)
            if creation_statements is None
            else _as_list(creation_statements)
        )
        revocation = (
            default_revocation_statements(pg.database)
            if revocation_statements is None
            else _as_list(revocation_statements)
        )
        self._record(
            self._write,
            path=f"{mount}/roles/{name}",
            data={
                "db_name": "postgres",
                "creation_statements": creation,
                "revocation_statements": revocation,
                "default_ttl": _ttl(default_ttl),
                "max_ttl": _ttl(max_ttl),
            },
        )

    def create_static_role(
        self,
        name: str,
        *,
        username: str,
        rotation_period: int | str = 3600,
        mount: str = _MOUNT_DB,
    ) -> None:
        """Create LOGIN user *username* in PostgreSQL, then ``<mount>/static-roles/<name>``.

        Vault rotates the password immediately, so the random initial one is never usable.
        """
        from psycopg import sql

        with self.postgres.connect() as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} WITH LOGIN PASSWORD {} IN ROLE {}").format(
                    sql.Identifier(username),
                    sql.Literal(secrets.token_urlsafe(24)),
                    sql.Identifier(self.postgres.owner_role),
                )
            )
        self._record(
            self._write,
            path=f"{mount}/static-roles/{name}",
            data={
                "db_name": "postgres",
                "username": username,
                "rotation_period": _ttl(rotation_period),
            },
        )

    def create_kubernetes_role(
        self,
        name: str,
        *,
        service_account: str | Sequence[str] = "app",
        namespace: str | Sequence[str] = "default",
        policies: Sequence[str] = (APP_POLICY,),
        token_ttl: int | str = 60,
        token_max_ttl: int | str = 0,
        audience: str | None = None,
    ) -> None:
        """Role ``auth/kubernetes/role/<name>`` bound to the given service account(s)."""
        data: dict[str, Any] = {
            "bound_service_account_names": _as_list(service_account),
            "bound_service_account_namespaces": _as_list(namespace),
            "token_policies": list(policies),
            "token_ttl": _ttl(token_ttl),
            "token_max_ttl": _ttl(token_max_ttl),
        }
        if audience is not None:
            data["audience"] = audience
        self._record(self._write, path=f"auth/{_MOUNT_K8S}/role/{name}", data=data)

    def create_jwt_role(
        self,
        name: str,
        *,
        service_account: str = "app",
        namespace: str = "default",
        audience: str = "vault",
        policies: Sequence[str] = (APP_POLICY,),
        token_ttl: int | str = 60,
        token_max_ttl: int | str = 0,
    ) -> None:
        """Role ``auth/jwt/role/<name>`` accepting the stand-in's SA tokens offline.

        Issue matching tokens with ``stack.kube.issue_token(audiences=("vault",))``.
        """
        self._record(
            self._write,
            path=f"auth/{_MOUNT_JWT}/role/{name}",
            data={
                "role_type": "jwt",
                "user_claim": "sub",
                "bound_subject": f"system:serviceaccount:{namespace}:{service_account}",
                "bound_audiences": [audience],
                "token_policies": list(policies),
                "token_ttl": _ttl(token_ttl),
                "token_max_ttl": _ttl(token_max_ttl),
            },
        )

    def create_approle(
        self,
        name: str,
        *,
        policies: Sequence[str] = (APP_POLICY,),
        token_ttl: int | str = 60,
        token_max_ttl: int | str = 0,
    ) -> tuple[str, str]:
        """AppRole ``auth/approle/role/<name>``; returns ``(role_id, secret_id)``.

        On :meth:`restart_vault` the same pair is re-installed, as a persistent Vault would
        have kept it.
        """
        data = {
            "token_policies": list(policies),
            "token_ttl": _ttl(token_ttl),
            "token_max_ttl": _ttl(token_max_ttl),
        }
        base = f"auth/{_MOUNT_APPROLE}/role/{name}"
        self._write(base, data)
        role_id = str(self.root_client().read(f"{base}/role-id")["data"]["role_id"])
        secret_id = str(self._write(f"{base}/secret-id")["data"]["secret_id"])
        with self._lock:
            self._replay.append(
                (
                    self._replay_approle,
                    {
                        "base": base,
                        "data": data,
                        "role_id": role_id,
                        "secret_id": secret_id,
                    },
                )
            )
        return role_id, secret_id

    def wrapped_secret_id(self, name: str, *, wrap_ttl: int | str = 60) -> str:
        """A new secret id for AppRole ``name``, response-wrapped: the wrapping token.

        What a delivery system (a CI job, a trusted orchestrator) hands the application; the
        secret id itself is only seen by whoever unwraps it, once.
        """
        answer = self.root_client().adapter.post(
            f"/v1/auth/{_MOUNT_APPROLE}/role/{name}/secret-id",
            headers={"X-Vault-Wrap-TTL": _ttl(wrap_ttl)})
        return str(answer["wrap_info"]["token"])

    def _replay_approle(
        self, base: str, data: dict[str, Any], role_id: str, secret_id: str
    ) -> None:
        self._write(base, {**data, "role_id": role_id})
        self._write(f"{base}/custom-secret-id", {"secret_id": secret_id})

    def create_cert_role(
        self,
        name: str,
        *,
        certificate: str,
        policies: Sequence[str] = (APP_POLICY,),
        token_ttl: int | str = 60,
        token_max_ttl: int | str = 0,
        allowed_common_names: Sequence[str] = (),
    ) -> None:
        """Role ``auth/cert/certs/<name>`` trusting ``certificate`` (a CA's or a leaf's PEM).

        Needs a stack started with ``tls=True`` (cert logins happen in the TLS handshake).
        """
        if not self.tls:
            raise RuntimeError("cert auth needs VaultDBStack.start(tls=True)")
        data: dict[str, Any] = {
            "certificate": certificate,
            "token_policies": list(policies),
            "token_ttl": _ttl(token_ttl),
            "token_max_ttl": _ttl(token_max_ttl),
        }
        if allowed_common_names:
            data["allowed_common_names"] = list(allowed_common_names)
        self._record(self._write, path=f"auth/{_MOUNT_CERT}/certs/{name}", data=data)

    def create_token(
        self,
        policies: Sequence[str] = (APP_POLICY,),
        ttl: int | str = 60,
        renewable: bool = True,
        **extra: Any,
    ) -> str:
        """A token (child of root) via ``auth/token/create``; *extra* goes to the API as is.

        Tokens are not replayed by :meth:`restart_vault`: losing them is the point of it.
        """
        resp = self._write(
            "auth/token/create",
            {
                "policies": list(policies),
                "ttl": _ttl(ttl),
                "renewable": renewable,
                **extra,
            },
        )
        return str(resp["auth"]["client_token"])

    # ---------------------------------------------------------------- Kubernetes helpers

    def write_service_account_token(
        self, path: str | os.PathLike[str], **issue_kwargs: Any
    ) -> Path:
        """Write a fresh SA token to *path* atomically, like the kubelet's projected volume.

        Readers (``KubernetesAuth(token_path=...)``) never see a partial file: the token is
        written to a sibling temp file and renamed over *path*.
        """
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        token = self.kube.issue_token(**issue_kwargs)
        fd, tmp = tempfile.mkstemp(prefix=".token-", dir=target.parent)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(token)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

    # ---------------------------------------------------------------- PostgreSQL helpers

    def sql(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement as superuser on the app database; returns rows (or ``[]``)."""
        return self.postgres.sql(query, params)

    def dynamic_db_roles(self) -> set[str]:
        """Vault-created users still present in PostgreSQL (for leak assertions)."""
        return {r[0] for r in self.sql("SELECT rolname FROM pg_roles WHERE rolname LIKE 'v-%'")}

    def session_users(self) -> dict[str, int]:
        """Open client sessions per user (excluding the one asking)."""
        rows = self.sql(
            "SELECT usename, count(*) FROM pg_stat_activity "
            "WHERE backend_type = 'client backend' AND usename IS NOT NULL "
            "AND pid <> pg_backend_pid() GROUP BY usename"
        )
        return {str(u): int(n) for u, n in rows}

    # ---------------------------------------------------------------- faults

    def _server(self) -> OpenBaoServer:
        if not isinstance(self.vault, OpenBaoServer):
            raise TypeError(
                f"this stack's Vault is a {type(self.vault).__name__}, not one dev server: "
                "use its own fault helpers (VaultCluster.kill/pause/step_down/restart)"
            )
        return self.vault

    def pause_vault(self) -> None:
        """Freeze OpenBao (SIGSTOP): requests hang until :meth:`resume_vault`."""
        self._server().pause()

    def resume_vault(self) -> None:
        """Unfreeze OpenBao (SIGCONT)."""
        self._server().resume()

    def restart_vault(self, reconfigure: bool = True) -> None:
        """Kill OpenBao and start an empty one on the same address and root token.

        All tokens and leases are gone (their database users stay in PostgreSQL until
        something revokes them). With *reconfigure*, the operator configuration and every
        role/policy created through this object are re-applied.
        """
        self._server().restart()
        if reconfigure:
            self._configure()

    def restart_postgres(self) -> None:
        """Fast-restart PostgreSQL on the same port: sessions drop, data and roles survive."""
        self.postgres.restart()
