"""A real, throwaway MariaDB server for tests, wired to the stack's OpenBao.

:class:`MariaDBServer` runs ``mariadbd`` (Debian's ``mariadb-server``; on a laptop any
installed ``mariadbd``/``mysqld``, or ``VAULTDB_MARIADB_BIN``) on a free 127.0.0.1 port with a
fresh data directory. Under root it runs with ``--user=root`` (mariadbd refuses root
otherwise); the root account (no password) is reached only through the server's Unix socket.

:class:`MySQLTarget` configures OpenBao's ``mysql-database-plugin`` on its own secrets mount
(``mysql``) of an existing :class:`~vaultdb.testing.VaultDBStack`, so one OpenBao serves both
databases. Its default statements are the ones docs/mysql.md recommends:

* creation grants privileges on the application *schema* (``app.*``), not on objects: MySQL
  has no object owner, so whatever one dynamic user creates, the next one may use and alter.
  Views, routines and triggers are the exception: they carry a ``DEFINER`` account, and a view
  or routine defined ``SQL SECURITY DEFINER`` (the default) fails once that user is dropped:
  create them ``SQL SECURITY INVOKER`` (triggers always run as their definer: give them a stable
  ``DEFINER``, which takes the ``SET USER`` privilege);
* revocation drops the user, then ends its open sessions (``KILL USER``, MariaDB only):
  ``DROP USER`` alone leaves them working.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._ports import free_port, port_is_open
from ._procs import Watchdog, stop_process_group, tail

if TYPE_CHECKING:
    import pymysql

    from vaultdb.provider import CredentialProvider

    from ._stack import VaultDBStack

__all__ = [
    "MYSQL_POLICY",
    "MariaDBServer",
    "MySQLTarget",
    "default_mysql_creation_statements",
    "default_mysql_revocation_statements",
    "find_mariadbd",
]

logger = logging.getLogger(__name__)

_START_TIMEOUT = 60.0
_START_ATTEMPTS = 3
_MOUNT = "mysql"
_CONNECTION = "mariadb"

#: Policy for the ``mysql`` mount's credentials; a token needs it next to ``APP_POLICY``
#: (which grants lease renewal and revocation).
MYSQL_POLICY = "vaultdb-app-mysql"


def find_mariadbd() -> str:
    """The server binary: ``VAULTDB_MARIADB_BIN``, else ``mariadbd``/``mysqld`` on PATH or in
    the usual sbin/libexec directories. ``FileNotFoundError`` names what to install."""
    override = os.environ.get("VAULTDB_MARIADB_BIN")
    if override:
        if not os.access(override, os.X_OK):
            raise FileNotFoundError(f"VAULTDB_MARIADB_BIN={override!r} is not executable")
        return override
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin",
                            "/usr/libexec", "/usr/local/opt/mariadb/bin"])
    for name in ("mariadbd", "mysqld"):
        found = shutil.which(name, path=path)
        if found:
            return found
    raise FileNotFoundError(
        "MariaDB server not found: install it (Debian/Ubuntu: apt-get install mariadb-server; "
        "macOS: brew install mariadb) or set VAULTDB_MARIADB_BIN to a mariadbd binary")


def _install_db(server_bin: str) -> list[str]:
    """Command that creates the system tables (``mariadb-install-db`` next to the server)."""
    here = Path(server_bin).resolve().parent
    path = os.pathsep.join([str(here), str(here.parent / "bin"), str(here.parent / "scripts"),
                            os.environ.get("PATH", "")])
    for name in ("mariadb-install-db", "mysql_install_db"):
        found = shutil.which(name, path=path)
        if found:
            return [found]
    raise FileNotFoundError(f"mariadb-install-db not found next to {server_bin}")


def default_mysql_creation_statements(database: str = "app") -> list[str]:
    """A user that may do anything inside ``database`` (tables, indexes, migrations)."""
    return [
        "CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}';",
        f"GRANT ALL PRIVILEGES ON `{database}`.* TO '{{{{name}}}}'@'%';",
    ]


def default_mysql_revocation_statements() -> list[str]:
    """Drop the user (no new logins), then end the sessions it still has open (MariaDB)."""
    return [
        "DROP USER IF EXISTS '{{name}}'@'%';",
        "KILL USER '{{name}}';",
    ]


class MariaDBServer:
    """One ``mariadbd`` on 127.0.0.1 with database ``app`` and an admin account for Vault."""

    def __init__(self, workdir: str | os.PathLike[str], *, watchdog: Watchdog | None = None,
                 database: str = "app") -> None:
        self.workdir = Path(workdir).resolve()
        self.datadir = self.workdir / "data"
        self.log_path = self.workdir / "mariadb.log"
        self.host = "127.0.0.1"
        self.port = 0
        self.database = database
        #: The account OpenBao's plugin logs in with (may create users and grant).
        self.admin_user = "vaultadmin"
        self.admin_password = secrets.token_urlsafe(18)
        self.server_bin = find_mariadbd()
        self._watchdog = watchdog
        self._proc: subprocess.Popen[bytes] | None = None
        # Unix socket paths are limited to ~107 bytes: keep it short, outside the workdir.
        self._sockdir = Path(tempfile.mkdtemp(prefix="vaultdb-my-"))
        if watchdog is not None:
            watchdog.watch_dir(self._sockdir)
        self.socket = str(self._sockdir / "mysqld.sock")

    def __repr__(self) -> str:
        return f"MariaDBServer({self.host}:{self.port}/{self.database})"

    def _server_args(self) -> list[str]:
        args = ["--no-defaults", f"--datadir={self.datadir}", "--innodb-log-file-size=4M",
                "--innodb-buffer-pool-size=16M"]
        if os.geteuid() == 0:
            args.append("--user=root")  # mariadbd refuses to run as root without it
        return args

    def start(self) -> None:
        """Create the data directory, start the server, create ``app`` and the admin user."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not (self.datadir / "mysql").is_dir():
            done = subprocess.run(
                [*_install_db(self.server_bin), *self._server_args(), "--skip-test-db",
                 "--auth-root-authentication-method=normal"],
                capture_output=True, text=True, timeout=120, cwd=self.workdir)
            if done.returncode != 0:
                raise RuntimeError(f"mariadb-install-db failed ({done.returncode}):\n"
                                   f"{done.stdout[-2000:]}{done.stderr[-2000:]}")
        for attempt in range(_START_ATTEMPTS):
            self.port = free_port()
            try:
                self._start_once()
                break
            except RuntimeError as exc:
                if attempt + 1 == _START_ATTEMPTS or "Address already in use" not in str(exc):
                    raise
        with self.connect() as conn, conn.cursor() as cur:
            # root without a password stays reachable through the socket only.
            cur.execute("SELECT Host FROM mysql.user WHERE User = 'root' AND Host <> 'localhost'")
            for (host,) in cur.fetchall():
                cur.execute("DROP USER 'root'@%s", (host,))
            cur.execute(f"CREATE DATABASE IF NOT EXISTS `{self.database}`")
            cur.execute("CREATE USER IF NOT EXISTS %s@'127.0.0.1' IDENTIFIED BY %s",
                        (self.admin_user, self.admin_password))
            cur.execute(f"GRANT ALL PRIVILEGES ON *.* TO '{self.admin_user}'@'127.0.0.1' "
                        "WITH GRANT OPTION")

    def _start_once(self) -> None:
        cmd = [self.server_bin, *self._server_args(), f"--port={self.port}",
               f"--bind-address={self.host}", f"--socket={self.socket}",
               f"--pid-file={self.workdir / 'mariadbd.pid'}", f"--log-error={self.log_path}",
               "--skip-name-resolve", "--skip-log-bin", "--max-connections=300"]
        self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, cwd=self.workdir,
                                      start_new_session=True)
        if self._watchdog is not None:
            self._watchdog.watch(self._proc.pid)
        deadline = time.monotonic() + _START_TIMEOUT
        while not (os.path.exists(self.socket) and port_is_open(self.host, self.port)):
            if self._proc.poll() is not None:
                self._forget()
                raise RuntimeError(f"mariadbd exited with status {self._proc.returncode}; "
                                   f"log tail ({self.log_path}):\n{tail(self.log_path)}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"mariadbd not ready within {_START_TIMEOUT:.0f}s; "
                                   f"log tail ({self.log_path}):\n{tail(self.log_path)}")
            time.sleep(0.05)
        logger.info("MariaDB ready at %s:%d", self.host, self.port)

    def _forget(self) -> None:
        if self._proc is not None and self._watchdog is not None:
            self._watchdog.unwatch(self._proc.pid)

    def stop(self) -> None:
        """Stop the server (SIGTERM, SIGKILL after 20 s). Idempotent; keeps the data."""
        if self._proc is None:
            return
        stop_process_group(self._proc, grace=20.0, name="MariaDB")
        self._forget()
        self._proc = None

    def cleanup(self) -> None:
        """Stop and remove the socket directory."""
        self.stop()
        shutil.rmtree(self._sockdir, ignore_errors=True)
        if self._watchdog is not None:
            self._watchdog.unwatch_dir(self._sockdir)

    # ---------------------------------------------------------------- SQL helpers

    def connect(self, user: str | None = None, password: str | None = None,
                database: str | None = None, **kwargs: Any) -> pymysql.Connection[Any]:
        """A PyMySQL connection: as root over the socket, or as ``user`` over TCP."""
        import pymysql

        if user is None:
            return pymysql.connect(unix_socket=self.socket, user="root", database=database,
                                   autocommit=True, **kwargs)
        return pymysql.connect(host=self.host, port=self.port, user=user,
                               password=password or "", database=database, autocommit=True,
                               **kwargs)

    def sql(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """One statement as root on the app database; returns the rows (or ``[]``)."""
        with self.connect(database=self.database) as conn, conn.cursor() as cur:
            cur.execute(query, tuple(params) or None)
            return list(cur.fetchall())

    def users(self, prefix: str = "v-") -> set[str]:
        """Accounts whose name starts with ``prefix`` (Vault's users by default)."""
        rows = self.sql("SELECT User FROM mysql.user WHERE User LIKE %s",
                        (prefix.replace("_", r"\_") + "%",))
        return {str(r[0]) for r in rows}

    def session_users(self) -> dict[str, int]:
        """Open client sessions per user (excluding the one asking and system threads)."""
        rows = self.sql("SELECT USER, count(*) FROM information_schema.PROCESSLIST "
                        "WHERE ID <> CONNECTION_ID() AND COMMAND <> 'Daemon' "
                        "AND USER NOT IN ('system user', 'event_scheduler') GROUP BY USER")
        return {str(u): int(n) for u, n in rows}


class MySQLTarget:
    """A :class:`MariaDBServer` served by the stack's OpenBao under the ``mysql`` mount.

    Roles are created through the stack's replay log, so ``stack.restart_vault()`` rebuilds
    them with the rest of the operator configuration.
    """

    def __init__(self, stack: VaultDBStack, server: MariaDBServer, *, mount: str = _MOUNT,
                 username_template: str | None = None) -> None:
        self.stack = stack
        self.server = server
        self.mount = mount
        self.connection = _CONNECTION
        self.policy = MYSQL_POLICY if mount == _MOUNT else f"{MYSQL_POLICY}-{mount}"
        self.username_template = username_template

    @classmethod
    def start(cls, stack: VaultDBStack, workdir: str | os.PathLike[str] | None = None,
              **kwargs: Any) -> MySQLTarget:
        """Start MariaDB (in ``stack.workdir/mariadb`` by default) and configure OpenBao."""
        server = MariaDBServer(workdir or stack.workdir / "mariadb",
                               watchdog=stack._watchdog)
        try:
            server.start()
            target = cls(stack, server, **kwargs)
            stack._record(target._configure)
        except BaseException:
            server.cleanup()
            raise
        return target

    def _configure(self) -> None:
        client = self.stack.root_client()
        if f"{self.mount}/" not in client.sys.list_mounted_secrets_engines()["data"]:
            client.sys.enable_secrets_engine(backend_type="database", path=self.mount)
        client.sys.create_or_update_policy(name=self.policy, policy=(
            f'path "{self.mount}/creds/*" {{ capabilities = ["read"] }}\n'
            f'path "{self.mount}/static-creds/*" {{ capabilities = ["read"] }}\n'))
        self._write_connection(self.connection, self.username_template)

    def add_connection(self, name: str, *, username_template: str | None = None) -> None:
        """Another ``<mount>/config/<name>`` to the same server (e.g. another template)."""
        self.stack._record(self._write_connection, name=name,
                           username_template=username_template)

    def _write_connection(self, name: str, username_template: str | None) -> None:
        data: dict[str, Any] = {
            "plugin_name": "mysql-database-plugin",
            "connection_url": (f"{{{{username}}}}:{{{{password}}}}@tcp({self.server.host}:"
                               f"{self.server.port})/"),
            "username": self.server.admin_user,
            "password": self.server.admin_password,
            "allowed_roles": "*",
            "verify_connection": True,
        }
        if username_template is not None:
            data["username_template"] = username_template
        self.stack._write(f"{self.mount}/config/{name}", data)

    def close(self) -> None:
        self.server.cleanup()

    def create_token(self, ttl: int | str = 600) -> str:
        """A token that may read this mount's credentials and manage their leases."""
        from ._stack import APP_POLICY

        return self.stack.create_token(policies=(APP_POLICY, self.policy), ttl=ttl)

    def create_role(self, name: str, *, default_ttl: int | str = 3, max_ttl: int | str = 9,
                    creation_statements: Iterable[str] | None = None,
                    revocation_statements: Iterable[str] | None = None,
                    connection: str | None = None) -> None:
        """Dynamic role ``<mount>/roles/<name>`` with the default statements above."""
        creation = (default_mysql_creation_statements(self.server.database)
                    if creation_statements is None else list(creation_statements))
        revocation = (default_mysql_revocation_statements() if revocation_statements is None
                      else list(revocation_statements))
        self.stack._record(self.stack._write, path=f"{self.mount}/roles/{name}", data={
            "db_name": connection or self.connection,
            "creation_statements": creation,
            "revocation_statements": revocation,
            "default_ttl": f"{default_ttl}s" if isinstance(default_ttl, int) else default_ttl,
            "max_ttl": f"{max_ttl}s" if isinstance(max_ttl, int) else max_ttl,
        })

    def users_of_role(self, role: str) -> set[str]:
        """Users Vault created for ``role`` that still exist.

        The plugin's default template is ``v-<display name[:10]>-<role[:10]>-<random>...``
        cut to 32 characters, so the role's first 10 characters identify it.
        """
        return {u for u in self.server.users() if f"-{role[:10]}" in u}

    def session_users(self) -> dict[str, int]:
        return self.server.session_users()

    def assert_retired_users_gone(self, provider: CredentialProvider, role: str,
                                  seen: set[str], *, at_least: int = 1,
                                  timeout: float = 15.0) -> None:
        """Every user in ``seen`` but the current one is dropped and has no session left."""
        from ._helpers import wait_for

        retired = seen - {provider.credentials().username}
        assert len(retired) >= at_least, f"only {len(retired)} retired users, want {at_least}"
        wait_for(lambda: not (self.users_of_role(role) & retired), timeout=timeout)
        wait_for(lambda: not (set(self.session_users()) & retired), timeout=timeout)

    def env(self, **extra: str) -> dict[str, str]:
        """The stack's child environment plus ``MYSQL_HOST``/``MYSQL_PORT``/``MYSQL_DATABASE``."""
        env = self.stack.env()
        env.update(MYSQL_HOST=self.server.host, MYSQL_PORT=str(self.server.port),
                   MYSQL_DATABASE=self.server.database, VAULTDB_MOUNT=self.mount, **extra)
        return env
