"""A real Redis server with ACLs, wired to the stack's OpenBao as a database connection.

Vault's ``redis-database-plugin`` issues one Redis ACL user per lease (``ACL SETUSER`` with the
role's rules) and deletes it on revocation (``ACL DELUSER``, which also disconnects the user's
clients). :class:`RedisServer` runs ``redis-server`` (Debian's 7.x, or any on ``PATH``, or
``VAULTDB_REDIS_SERVER``) on a free 127.0.0.1 port with the ``default`` user switched off and an
admin user for Vault. The admin password is set over the socket right after start-up, so it is
never on a command line or on disk. :class:`VaultRedis` adds that server to an existing
:class:`~vaultdb.testing.VaultDBStack` (``database/config/redis``) rather than starting a second
OpenBao, and creates roles whose ``creation_statements`` are ACL rules.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._ports import free_port
from ._procs import Watchdog, stop_process_group, tail

if TYPE_CHECKING:
    import redis

    from ._stack import VaultDBStack

__all__ = ["DEFAULT_ACL_RULES", "RedisServer", "VaultRedis", "find_redis_server"]

logger = logging.getLogger(__name__)

DEFAULT_ACL_RULES = ("~*", "&*", "+@all")
"""ACL rules of a role when none are given: every key, every pub/sub channel, every command."""

_START_TIMEOUT = 20.0
_START_ATTEMPTS = 3
_CONNECTION = "redis"  # database/config/<name> in the stack's OpenBao


def find_redis_server() -> str | None:
    """``VAULTDB_REDIS_SERVER``, else ``redis-server`` (or ``valkey-server``) on ``PATH``."""
    override = os.environ.get("VAULTDB_REDIS_SERVER")
    if override:
        return override if Path(override).is_file() else None
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").is_file()
                                       else None)
        if found:
            return found
    return None


class RedisServer:
    """``redis-server`` in *workdir*, on 127.0.0.1 only, no persistence, ACLs on."""

    host = "127.0.0.1"
    admin_user = "vaultdb-admin"

    def __init__(self, workdir: str | os.PathLike[str], *, binary: str | None = None,
                 watchdog: Watchdog | None = None) -> None:
        found = binary or find_redis_server()
        if found is None:
            raise FileNotFoundError("no redis-server found: install Debian's redis-server "
                                    "(apt-get install redis-server) or set VAULTDB_REDIS_SERVER")
        self.binary = found
        self.workdir = Path(workdir)
        self.port = 0
        self.log_path = self.workdir / "redis.log"
        self._password = secrets.token_urlsafe(24)
        self._watchdog = watchdog
        self._proc: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"RedisServer(host={self.host!r}, port={self.port}, {state})"

    @property
    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def admin_password(self) -> str:
        return self._password

    def url(self, db: int = 0) -> str:
        """``redis://127.0.0.1:<port>/<db>``: no user, no password."""
        return f"redis://{self.host}:{self.port}/{db}"

    def start(self) -> None:
        """Start, then lock down: admin user created, ``default`` user off."""
        if self.is_running:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        for attempt in range(_START_ATTEMPTS):
            self.port = free_port()
            try:
                self._start_once()
                return
            except RuntimeError as exc:
                if attempt + 1 == _START_ATTEMPTS or "in use" not in str(exc):
                    raise
                logger.info("port %d was taken before Redis bound it; retrying", self.port)

    def _start_once(self) -> None:
        import redis

        cmd = [self.binary, "--port", str(self.port), "--bind", self.host,
               "--protected-mode", "yes", "--save", "", "--appendonly", "no",
               "--dir", str(self.workdir), "--logfile", str(self.log_path),
               "--daemonize", "no"]
        self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.STDOUT, cwd=self.workdir,
                                      start_new_session=True)
        if self._watchdog is not None:
            self._watchdog.watch(self._proc.pid)
        deadline = time.monotonic() + _START_TIMEOUT
        bootstrap = redis.Redis(host=self.host, port=self.port, socket_timeout=5,
                                socket_connect_timeout=1)
        try:
            while True:
                if self._proc.poll() is not None:
                    self._forget()
                    raise RuntimeError(f"redis-server exited with status "
                                       f"{self._proc.returncode} during start-up; log tail "
                                       f"({self.log_path}):\n{tail(self.log_path)}")
                try:
                    bootstrap.ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError(f"redis-server did not answer within "
                                           f"{_START_TIMEOUT:.0f}s; log tail:\n"
                                           f"{tail(self.log_path)}") from None
                    time.sleep(0.05)
            bootstrap.acl_setuser(self.admin_user, enabled=True, passwords=[f"+{self._password}"],
                                  keys=["*"], channels=["*"], commands=["+@all"])
        finally:
            bootstrap.close()
        with self.admin() as admin:
            admin.acl_setuser("default", reset=True)  # off, no password, no commands
        logger.info("Redis ready at %s:%d", self.host, self.port)

    def admin(self, **kwargs: Any) -> redis.Redis:
        """A client logged in as the admin user (``decode_responses=True``)."""
        import redis

        return redis.Redis(host=self.host, port=self.port, username=self.admin_user,
                           password=self._password, decode_responses=True, socket_timeout=5,
                           **kwargs)

    def acl_users(self) -> set[str]:
        with self.admin() as admin:
            return set(admin.acl_users())

    def clients(self) -> dict[str, int]:
        """Open client connections per user (the asking connection excluded)."""
        with self.admin() as admin:
            me = admin.client_id()
            counts: dict[str, int] = {}
            for client in admin.client_list():
                if int(client["id"]) != me:
                    counts[client["user"]] = counts.get(client["user"], 0) + 1
            return counts

    def _forget(self) -> None:
        if self._proc is not None and self._watchdog is not None:
            self._watchdog.unwatch(self._proc.pid)

    def stop(self) -> None:
        """SIGTERM (Redis exits at once without persistence), then SIGKILL. Idempotent."""
        if self._proc is None:
            return
        stop_process_group(self._proc, grace=5.0, name="Redis")
        self._forget()
        self._proc = None


class VaultRedis:
    """A :class:`RedisServer` known to the stack's OpenBao as ``database/config/redis``.

    Use :meth:`start` (or the ``vaultdb_redis`` pytest fixture). The connection and the roles
    are recorded on the stack, so ``stack.restart_vault()`` re-applies them.
    """

    connection = _CONNECTION

    def __init__(self, stack: VaultDBStack, server: RedisServer) -> None:
        self.stack = stack
        self.server = server

    @classmethod
    def start(cls, stack: VaultDBStack, workdir: str | os.PathLike[str] | None = None
              ) -> VaultRedis:
        server = RedisServer(workdir or stack.workdir / "redis",
                             watchdog=stack._watchdog)
        server.start()
        kit = cls(stack, server)
        try:
            kit._configure()
        except BaseException:
            server.stop()
            raise
        return kit

    def __repr__(self) -> str:
        return f"VaultRedis({self.server!r}, connection={self.connection!r})"

    def close(self) -> None:
        self.server.stop()

    def _configure(self) -> None:
        s = self.server
        self.stack._record(self.stack._write, path=f"database/config/{self.connection}", data={
            "plugin_name": "redis-database-plugin",
            "host": s.host, "port": s.port, "tls": False,
            "username": s.admin_user, "password": s.admin_password,
            "allowed_roles": "*", "verify_connection": True,
        })

    def create_role(self, name: str, *, acl_rules: Sequence[str] = DEFAULT_ACL_RULES,
                    default_ttl: int | str = 4, max_ttl: int | str = 6,
                    mount: str = "database") -> None:
        """Dynamic role ``<mount>/roles/<name>``; ``creation_statements`` is the ACL rules as
        one JSON list, the form the redis plugin expects."""
        self.stack._record(self.stack._write, path=f"{mount}/roles/{name}", data={
            "db_name": self.connection,
            "creation_statements": [json.dumps(list(acl_rules))],
            "default_ttl": _ttl(default_ttl), "max_ttl": _ttl(max_ttl),
        })

    def users_of_role(self, role: str) -> set[str]:
        """ACL users Vault created for ``role`` that still exist.

        The plugin's usernames are ``V_<display name>_<role>_<random>_<unix time>``, upper case.
        """
        marker = f"_{role.upper()}_"
        return {u for u in self.server.acl_users() if u.startswith("V_") and marker in u}

    def url(self, db: int = 0) -> str:
        return self.server.url(db)


def _ttl(value: int | str) -> str:
    return f"{value}s" if isinstance(value, int) else value
