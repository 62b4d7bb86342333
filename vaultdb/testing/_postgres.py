"""A real, throwaway PostgreSQL server for tests.

It is configured like a production target for Vault's database engine: password logins are
really checked (``scram-sha-256`` everywhere, including local sockets), the application database
``app`` exists, and a NOLOGIN owner role ``app_owner`` owns what dynamic users create, so Vault
can always ``DROP ROLE`` a revoked user.

``initdb`` and ``postgres`` refuse to run as root. Under root (containers, CI) we run them as
the ``postgres`` user (else ``nobody``); binaries and data must then be reachable by that user,
which is not a given when the virtualenv lives under ``/root`` (mode 700), hence the
world-readable copy of the binary tree in the temp directory.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import importlib.util
import logging
import os
import pwd
import re
import secrets
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._ports import free_port
from ._procs import ServerProcess, Watchdog, stop_process_group, tail

if TYPE_CHECKING:
    import psycopg

__all__ = ["ConnInfo", "PostgresServer", "find_pg_bin"]

logger = logging.getLogger(__name__)

_START_TIMEOUT = 30.0
_START_ATTEMPTS = 3
_SUPERUSER = "postgres"


# --------------------------------------------------------------------------- binaries


def find_pg_bin() -> Path:
    """Directory holding ``initdb``/``postgres``.

    ``VAULTDB_PG_BIN`` wins; then the binaries shipped in the ``pgserver`` wheel (located from
    the package spec, so pgserver's own server module is never imported; it has no wheels for
    Python 3.13+); then the newest Debian-style ``/usr/lib/postgresql/*/bin``; then the
    directory ``postgres`` on ``PATH`` really lives in (Homebrew, Fedora, symlinks).
    """
    override = os.environ.get("VAULTDB_PG_BIN")
    if override:
        path = Path(override)
        if not (path / "postgres").is_file():
            raise FileNotFoundError(f"VAULTDB_PG_BIN={override!r} has no 'postgres' binary")
        return path
    spec = importlib.util.find_spec("pgserver")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "pginstall" / "bin"
            if (candidate / "postgres").is_file():
                return candidate

    def _major(path: str) -> int:
        match = re.search(r"/(\d+)/bin$", path)
        return int(match.group(1)) if match else 0

    system = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_major, reverse=True)
    for candidate_str in system:
        if (Path(candidate_str) / "postgres").is_file():
            return Path(candidate_str)
    on_path = shutil.which("postgres")
    if on_path and (Path(on_path).resolve().parent / "initdb").is_file():
        return Path(on_path).resolve().parent
    raise FileNotFoundError(
        "PostgreSQL binaries not found: install 'vaultdb-creds[testing]' (pgserver, Python "
        "3.12 or older), install PostgreSQL, or set VAULTDB_PG_BIN"
    )


def _pg_version(pg_bin: Path) -> str:
    out = subprocess.run(
        [str(pg_bin / "postgres"), "--version"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    match = re.search(r"(\d+(?:\.\d+)*)", out)
    return match.group(1) if match else "unknown"


@dataclass(frozen=True)
class _RunAs:
    """The unprivileged account that runs PostgreSQL when we are root."""

    name: str
    uid: int
    gid: int

    def popen_kwargs(self) -> dict[str, Any]:
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def can_traverse(self, path: Path) -> bool:
        """Whether this user may reach *path* (execute bit on it and every ancestor).

        A plain mode-bit check (ACLs are ignored): good enough to decide between using a
        directory in place and falling back to a copy in the temp directory.
        """
        groups = set(os.getgrouplist(self.name, self.gid))
        current = Path(path).resolve()
        for part in [current, *current.parents]:
            try:
                st = part.stat()
            except OSError:
                return False
            if st.st_uid == self.uid:
                bit = stat.S_IXUSR
            elif st.st_gid in groups:
                bit = stat.S_IXGRP
            else:
                bit = stat.S_IXOTH
            if not st.st_mode & bit:
                return False
        return True


def _run_as() -> _RunAs | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            continue
        return _RunAs(name=name, uid=pw.pw_uid, gid=pw.pw_gid)
    raise RuntimeError("running as root and neither user 'postgres' nor 'nobody' exists")


def _usable_by(run_as: _RunAs, pg_bin: Path) -> bool:
    try:
        subprocess.run(
            [str(pg_bin / "postgres"), "--version"],
            capture_output=True,
            timeout=30,
            check=True,
            cwd="/",
            **run_as.popen_kwargs(),
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return True


def _valid_cache(path: Path, rel_bin: Path) -> bool:
    try:
        st = path.stat()
    except OSError:
        return False
    return (
        st.st_uid == os.geteuid()
        and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        and (path / rel_bin / "postgres").is_file()
    )


def _world_readable_copy(pg_bin: Path) -> Path:
    """Copy the install tree (bin, lib, share) to a cache dir the service user can read.

    The relative layout is kept, including a wheel's ``<pkg>.libs`` sibling directory: the
    pgserver binaries find ``libpq`` through ``RPATH=$ORIGIN/../../../pgserver.libs``.
    The copy is made under a temporary name and renamed into place, so concurrent test
    processes never see a half-copied tree; the loser of the race discards its copy. A cache
    not owned by us (or writable by others) is never trusted: it would be code run by a
    service account.
    """
    version = _pg_version(pg_bin)
    src_root = pg_bin.parent  # .../pgserver/pginstall
    pkg_dir = src_root.parent  # .../pgserver
    rel_bin = Path(pkg_dir.name) / src_root.name / "bin"
    origin = hashlib.sha256(str(src_root.resolve()).encode()).hexdigest()[:8]
    cache = Path(tempfile.gettempdir()) / (
        f"vaultdb-pginstall-{version}-{origin}-uid{os.geteuid()}"
    )
    if _valid_cache(cache, rel_bin):
        return cache / rel_bin
    tmp = Path(tempfile.mkdtemp(prefix=".vaultdb-pginstall-", dir=cache.parent))
    try:
        copies = [(src_root / sub, tmp / rel_bin.parent / sub) for sub in ("bin", "lib", "share")]
        wheel_libs = pkg_dir.parent / f"{pkg_dir.name}.libs"
        copies.append((wheel_libs, tmp / wheel_libs.name))
        for src, dst in copies:
            if src.is_dir():
                shutil.copytree(src, dst, symlinks=True)
        for dirpath, dirnames, filenames in os.walk(tmp):
            for entry in [Path(dirpath), *(Path(dirpath) / n for n in [*dirnames, *filenames])]:
                if not entry.is_symlink():
                    extra = stat.S_IXGRP | stat.S_IXOTH if entry.is_dir() else 0
                    entry.chmod(entry.stat().st_mode | stat.S_IRGRP | stat.S_IROTH | extra)
        try:
            os.rename(tmp, cache)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if not _valid_cache(cache, rel_bin):
        raise RuntimeError(f"PostgreSQL binary cache {cache} is not usable (owner/mode)")
    logger.info("copied PostgreSQL binaries to %s for the service user", cache)
    return cache / rel_bin


# --------------------------------------------------------------------------- conninfo


def _quote(value: str) -> str:
    if value and re.fullmatch(r"[A-Za-z0-9_.:/@+-]+", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def make_conninfo(**params: str | int | None) -> str:
    """libpq ``key=value`` string, quoting values as libpq requires; ``None`` values skipped."""
    return " ".join(f"{k}={_quote(str(v))}" for k, v in params.items() if v is not None)


class ConnInfo:
    """Connection parameters whose ``repr``/``str`` never show the password.

    Test output, logs and assertion rewrites print objects freely; the secret is only
    available on explicit request via :attr:`password`, :attr:`conninfo` or :attr:`url`.
    """

    __slots__ = ("_password", "dbname", "host", "port", "user")

    def __init__(self, *, host: str, port: int, dbname: str, user: str, password: str) -> None:
        self.host = host
        self.port = port
        self.dbname = dbname
        self.user = user
        self._password = password

    @property
    def password(self) -> str:
        return self._password

    @property
    def conninfo(self) -> str:
        """Full libpq conninfo including the password (pass to ``psycopg.connect``)."""
        return make_conninfo(
            host=self.host,
            port=self.port,
            dbname=self.dbname,
            user=self.user,
            password=self._password,
        )

    @property
    def url(self) -> str:
        """``postgresql://`` URL including the password (for SQLAlchemy and friends)."""
        from urllib.parse import quote

        return (
            f"postgresql://{quote(self.user, safe='')}:{quote(self._password, safe='')}"
            f"@{self.host}:{self.port}/{quote(self.dbname, safe='')}"
        )

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``psycopg.connect`` / ``asyncpg.connect``."""
        return {
            "host": self.host,
            "port": self.port,
            "dbname": self.dbname,
            "user": self.user,
            "password": self._password,
        }

    def __repr__(self) -> str:
        return (
            f"ConnInfo(host={self.host!r}, port={self.port}, dbname={self.dbname!r}, "
            f"user={self.user!r}, password='***')"
        )

    __str__ = __repr__


# --------------------------------------------------------------------------- server


class PostgresServer(ServerProcess):
    """A PostgreSQL cluster in *workdir*, listening on 127.0.0.1 only."""

    host = "127.0.0.1"

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        pg_bin: Path | None = None,
        database: str = "app",
        owner_role: str = "app_owner",
        watchdog: Watchdog | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.port = port or 0
        self._fixed_port = port is not None
        self.database = database
        self.owner_role = owner_role
        self.superuser = _SUPERUSER
        self._password = secrets.token_urlsafe(24)
        self._watchdog = watchdog
        self._run_as = _run_as()
        self.pg_bin = self._resolve_bin(pg_bin or find_pg_bin())
        self.log_path = self.workdir / "postgres.log"
        self._root: Path | None = None  # private dir: data + socket
        self._external_root = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._initialized = False

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"PostgresServer(host={self.host!r}, port={self.port}, {state})"

    def _resolve_bin(self, pg_bin: Path) -> Path:
        if self._run_as is None or _usable_by(self._run_as, pg_bin):
            return pg_bin
        return _world_readable_copy(pg_bin)

    # ---------------------------------------------------------------- properties

    @property
    def superuser_password(self) -> str:
        return self._password

    @property
    def superuser_dsn(self) -> ConnInfo:
        """Superuser connection to the app database (repr-safe)."""
        return ConnInfo(
            host=self.host,
            port=self.port,
            dbname=self.database,
            user=self.superuser,
            password=self._password,
        )

    @property
    def data_dir(self) -> Path:
        return self._private_root() / "data"

    @property
    def socket_dir(self) -> Path:
        return self._private_root() / "sock"

    def dsn(self, user: str | None = None, password: str | None = None) -> str:
        """libpq conninfo for the app database, with credentials only if given."""
        return make_conninfo(
            host=self.host, port=self.port, dbname=self.database, user=user, password=password
        )

    # ---------------------------------------------------------------- filesystem

    def _private_root(self) -> Path:
        """Directory owned by the server user holding the cluster and its socket.

        Under root the workdir may be unreachable for the service user (pytest's temp
        directories are mode 700), in which case the cluster lives in its own temp directory
        (symlinked from the workdir) and is removed on :meth:`cleanup`. The socket path must
        also stay under the ~107-byte ``sun_path`` limit.
        """
        if self._root is not None:
            return self._root
        candidate = self.workdir / "postgres"
        reachable = self._run_as is None or self._run_as.can_traverse(self.workdir)
        if reachable and len(str(candidate / "sock" / ".s.PGSQL.65535")) < 100:
            candidate.mkdir(parents=True, exist_ok=True)
            root = candidate
        else:
            root = Path(tempfile.mkdtemp(prefix="vaultdb-pg-"))
            self._external_root = True
            if self._watchdog is not None:
                self._watchdog.watch_dir(root)
            with contextlib.suppress(OSError):
                (self.workdir / "postgres").symlink_to(root)
        for sub in ("sock",):
            (root / sub).mkdir(exist_ok=True)
        root.chmod(0o700)
        if self._run_as is not None:
            for p in (root, root / "sock"):
                os.chown(p, self._run_as.uid, self._run_as.gid)
        self._root = root
        return root

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        return env

    def _popen_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"env": self._env(), "cwd": str(self._private_root())}
        if self._run_as is not None:
            kwargs.update(self._run_as.popen_kwargs())
        return kwargs

    # ---------------------------------------------------------------- lifecycle

    def initdb(self) -> None:
        """Create the cluster with a random superuser password (scram-sha-256 everywhere)."""
        root = self._private_root()
        pwfile = root / "pwfile"
        pwfile.write_text(self._password + "\n")
        pwfile.chmod(0o600)
        if self._run_as is not None:
            os.chown(pwfile, self._run_as.uid, self._run_as.gid)
        initdb_log = self.workdir / "initdb.log"
        cmd = [
            str(self.pg_bin / "initdb"),
            f"--pgdata={self.data_dir}",
            "--auth=scram-sha-256",
            f"--username={self.superuser}",
            f"--pwfile={pwfile}",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        ]
        try:
            with open(initdb_log, "wb") as log:
                result = subprocess.run(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=120,
                    check=False,
                    **self._popen_kwargs(),
                )
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise RuntimeError(
                f"initdb failed with status {result.returncode}; log tail ({initdb_log}):\n"
                f"{tail(initdb_log)}"
            )
        self._initialized = True

    def start(self) -> None:
        """initdb on first use, start, wait until logins work, then create app objects."""
        if self.is_running:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        first = not self._initialized
        if first:
            self.initdb()
        for attempt in range(_START_ATTEMPTS):
            if not self._fixed_port or not self.port:
                self.port = free_port()
            try:
                self._start_once()
                break
            except RuntimeError as exc:
                retry = not self._fixed_port and "already in use" in str(exc)
                if not retry or attempt == _START_ATTEMPTS - 1:
                    raise
                logger.info("port %d was taken before PostgreSQL bound it; retrying", self.port)
        self._fixed_port = True
        if first:
            self._bootstrap()

    def _start_once(self) -> None:
        settings = {
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(self.socket_dir),
            # Durability is worthless for a disposable test cluster; speed is not.
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "shared_buffers": "16MB",
            "max_connections": "200",
            "logging_collector": "off",
        }
        cmd = [str(self.pg_bin / "postgres"), "-D", str(self.data_dir), "-p", str(self.port)]
        for key, value in settings.items():
            cmd += ["-c", f"{key}={value}"]
        started = time.monotonic()
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== vaultdb: starting PostgreSQL on port {self.port} ===\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **self._popen_kwargs(),
            )
        if self._watchdog is not None:
            self._watchdog.watch(self._proc.pid)
        deadline = started + _START_TIMEOUT
        import psycopg

        while True:
            if self._proc.poll() is not None:
                self._forget()
                raise RuntimeError(
                    f"PostgreSQL exited with status {self._proc.returncode} during start-up; "
                    f"log tail ({self.log_path}):\n{tail(self.log_path)}"
                )
            try:
                with psycopg.connect(**self._superuser_kwargs("postgres"), connect_timeout=2):
                    pass
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"PostgreSQL not ready within {_START_TIMEOUT:.0f}s; "
                        f"log tail ({self.log_path}):\n{tail(self.log_path)}"
                    ) from None
                time.sleep(0.05)
                continue
            logger.info(
                "PostgreSQL ready on port %d in %.2fs", self.port, time.monotonic() - started
            )
            return

    def _superuser_kwargs(self, dbname: str) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "user": self.superuser,
            "password": self._password,
            "dbname": dbname,
        }

    def _bootstrap(self) -> None:
        import psycopg
        from psycopg import sql

        db = sql.Identifier(self.database)
        owner = sql.Identifier(self.owner_role)
        with psycopg.connect(
            **self._superuser_kwargs("postgres"), autocommit=True, connect_timeout=5
        ) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(db))
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(owner))
            conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(db, owner))
        with psycopg.connect(
            **self._superuser_kwargs(self.database), autocommit=True, connect_timeout=5
        ) as conn:
            conn.execute(sql.SQL("GRANT ALL ON SCHEMA public TO {}").format(owner))

    def stop(self) -> None:
        """Fast shutdown (what ``pg_ctl stop -m fast`` sends), escalating to immediate/KILL.

        Signals go straight to the postmaster we started instead of via ``pg_ctl``: same
        protocol, one fewer process to run as the service user.
        """
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                logger.warning("PostgreSQL fast shutdown timed out; immediate shutdown")
                stop_process_group(proc, first_signal=signal.SIGQUIT, grace=5.0, name="PostgreSQL")
        self._forget()
        self._proc = None

    def restart(self) -> None:
        """Stop (fast) and start again on the same port; data and roles survive."""
        self.stop()
        self.start()

    def cleanup(self) -> None:
        """Stop and remove the cluster if it lives outside the workdir."""
        self.stop()
        if self._root is not None and self._external_root:
            shutil.rmtree(self._root, ignore_errors=True)
            if self._watchdog is not None:
                self._watchdog.unwatch_dir(self._root)
            with contextlib.suppress(OSError):
                (self.workdir / "postgres").unlink()
        self._root = None

    # ---------------------------------------------------------------- SQL helpers

    def connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        """Superuser psycopg connection to the app database (autocommit)."""
        import psycopg

        params: dict[str, Any] = {
            **self._superuser_kwargs(self.database),
            "autocommit": True,
            "connect_timeout": 5,
        }
        params.update(kwargs)
        return psycopg.connect(**params)

    def sql(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement as superuser on the app database; rows if it returns any."""
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute(query, list(params) if params else None)  # type: ignore[arg-type]
            if cur.description is None:
                return []
            return list(cur.fetchall())
