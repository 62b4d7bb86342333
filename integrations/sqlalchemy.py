"""SQLAlchemy engines (sync and asyncio) whose connections use Vault's dynamic credentials.

Hooks, all on *that* engine (``engine.sync_engine`` for asyncio), never on a class:

* ``do_connect``, the hook SQLAlchemy documents for "Generating dynamic authentication tokens":
  each new DBAPI connection gets the provider's current username and password (never per
  checkout), its pool entry is stamped with the credential generation, and a login refused
  because the credentials were revoked or expired is retried once with refreshed credentials.
* :class:`~vaultdb.LeaseRotated` (renewer thread, no I/O): every pool entry of a retired
  generation is soft-invalidated (``ConnectionPoolEntry.invalidate(soft=True)``), so the pool
  itself closes and reopens it at its next checkout -- never while a caller holds it, and at
  no cost on the checkout path (SQLAlchemy checks that mark on every checkout anyway). Then a
  sweep checks the idle connections out through the pool (on a short-lived thread, or as a
  task on the engine's event loop for asyncio), which replaces the marked ones right away.
* :class:`~vaultdb.LeaseRevoked`: the sweep runs again for connections given back during the
  drain window.

A connection held by a caller beyond the drain window keeps working only if the revocation
statements leave its session alone; PostgreSQL roles revoked with ``pg_terminate_backend``
end it, and it is replaced at its next checkout.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from typing import TYPE_CHECKING, Any, TypeVar, cast

from vaultdb.events import LeaseEvent, LeaseRevoked, LeaseRotated
from vaultdb.provider import CredentialProvider

from ._common import GENERATION_KEY, MissingExtraError, RefreshGuard, is_auth_failure

try:
    import sqlalchemy
    from sqlalchemy import event
except ImportError as _error:  # pragma: no cover - depends on the environment
    raise MissingExtraError("sqlalchemy", "sqlalchemy") from _error

if TYPE_CHECKING:
    from sqlalchemy.engine import Dialect, Engine
    from sqlalchemy.ext.asyncio import AsyncEngine
    from sqlalchemy.pool import ConnectionPoolEntry, Pool

__all__ = ["attach", "create_async_engine", "create_engine", "detach"]

logger = logging.getLogger("vaultdb.integrations.sqlalchemy")

_ATTR = "_vaultdb_attachment"
E = TypeVar("E", "Engine", "AsyncEngine")


def create_engine(url: str | sqlalchemy.URL, *, provider: CredentialProvider,
                  set_role: str | None = None, **kwargs: Any) -> Engine:
    """``sqlalchemy.create_engine`` whose connections log in with ``provider``'s credentials.

    ``url`` carries no user or password; ``kwargs`` go to SQLAlchemy unchanged. With
    ``set_role``, each new connection runs ``SET ROLE`` (for databases whose Vault role does
    not set it server-side, so objects are owned by a stable role).
    """
    _refuse_creator(kwargs)
    return _attach_new(sqlalchemy.create_engine(url, **kwargs), provider, set_role)


def create_async_engine(url: str | sqlalchemy.URL, *, provider: CredentialProvider,
                        set_role: str | None = None, **kwargs: Any) -> AsyncEngine:
    """``sqlalchemy.ext.asyncio.create_async_engine`` with ``provider``'s credentials."""
    from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine

    _refuse_creator(kwargs)
    return _attach_new(_create_async_engine(url, **kwargs), provider, set_role)


def _attach_new(engine: E, provider: CredentialProvider, set_role: str | None) -> E:
    """``attach`` for an engine just built from ``url``: if the URL itself set vaultdb up
    (``plugin=vaultdb`` or a ``+vaultdb_`` dialect), say that, not "already attached"."""
    if getattr(_sync(engine), _ATTR, None) is not None:
        raise ValueError("the URL already sets vaultdb up (plugin=vaultdb, a +vaultdb_ "
                         "dialect or vaultdb_* parameters) and provider= was passed too: use "
                         "one or the other (sqlalchemy.create_engine(url) for the URL)")
    return attach(engine, provider, set_role=set_role)


def attach(engine: E, provider: CredentialProvider, *, set_role: str | None = None) -> E:
    """Make an existing engine (sync or asyncio) use ``provider``; returns the engine.

    For engines built elsewhere (Flask-SQLAlchemy, a framework's settings). Call it before the
    engine opens its first connection; attaching twice raises ``ValueError``.
    """
    sync_engine = _sync(engine)
    if getattr(sync_engine, _ATTR, None) is not None:
        raise ValueError(f"{sync_engine!r} is already attached to a vaultdb provider")
    if sync_engine.url.password is not None:
        logger.warning("the URL of %r has a password; vaultdb replaces it with the "
                       "provider's credentials", sync_engine)
    setattr(sync_engine, _ATTR, _Attachment(sync_engine, provider, set_role))
    logger.debug("attached %r to provider for role %r", sync_engine, provider.role)
    return engine


def detach(engine: Engine | AsyncEngine) -> None:
    """Remove what :func:`attach` installed (open connections are left as they are)."""
    sync_engine = _sync(engine)
    attachment: _Attachment | None = getattr(sync_engine, _ATTR, None)
    if attachment is not None:
        attachment.remove(sync_engine)
        setattr(sync_engine, _ATTR, None)


def _sync(engine: Engine | AsyncEngine) -> Engine:
    sync_engine = getattr(engine, "sync_engine", None)
    return cast("Engine", engine if sync_engine is None else sync_engine)


def _refuse_creator(kwargs: dict[str, Any]) -> None:
    if "creator" in kwargs or "async_creator" in kwargs:
        raise TypeError("creator= bypasses do_connect, so vaultdb cannot supply credentials; "
                        "pass connect arguments in the URL or connect_args instead")


class _Attachment:
    """The hooks installed on one engine, and the state they share."""

    def __init__(self, engine: Engine, provider: CredentialProvider,
                 set_role: str | None) -> None:
        self.provider = provider
        self.guard = RefreshGuard(provider)
        quote = engine.dialect.identifier_preparer.quote_identifier
        self.set_role_sql = None if set_role is None else f"SET ROLE {quote(set_role)}"
        self.loop: asyncio.AbstractEventLoop | None = None
        self.sweep_lock = threading.Lock()
        self.sweep_again = False
        self.tasks: set[asyncio.Task[None]] = set()
        self.engine_ref = weakref.ref(engine)
        #: Pool entries this engine opened (weakly held; the pool owns them).
        self.entries: weakref.WeakSet[ConnectionPoolEntry] = weakref.WeakSet()
        self.entries_lock = threading.Lock()
        event.listen(engine, "do_connect", self.do_connect)
        self.unsubscribe = provider.subscribe(self.on_lease_event, LeaseRotated, LeaseRevoked)

    def remove(self, engine: Engine) -> None:
        self.unsubscribe()
        event.remove(engine, "do_connect", self.do_connect)

    # -- new connections --------------------------------------------------------------------

    def do_connect(self, dialect: Dialect, rec: ConnectionPoolEntry | None,
                   cargs: tuple[Any, ...],
                   cparams: dict[str, Any]) -> Any:
        creds = self.provider.credentials()
        if self.listeners_after(dialect):
            # A do_connect listener added after this one may replace the arguments or open the
            # connection itself, as SQLAlchemy allows: hand it the credentials and step aside
            # (that connection then gets no refresh-once retry and no SET ROLE from vaultdb, and
            # no generation stamp: it is replaced at the first rotation, like a retired one).
            cparams["user"], cparams["password"] = creds.username, creds.password
            self.track(rec, None)
            return None
        try:
            dbapi_conn = _open(dialect, cargs, cparams, creds.username, creds.password)
        except Exception as error:
            if not is_auth_failure(error):
                raise
            fresh = self.guard.refresh(creds)
            if fresh is None:
                raise
            logger.warning("the database refused user %r (generation %d): its lease was revoked "
                           "or expired; retrying once as %r (generation %d)", creds.username,
                           creds.generation, fresh.username, fresh.generation)
            try:
                dbapi_conn = _open(dialect, cargs, cparams, fresh.username, fresh.password)
            except Exception as again:
                if is_auth_failure(again):
                    self.guard.retry_failed(fresh)
                raise
            creds = fresh
        self.track(rec, None)  # before the check below, so a rotation cannot miss it
        if not self.provider.is_current(creds.generation):  # rotated while connecting
            dbapi_conn.close()
            creds = self.provider.credentials()
            dbapi_conn = _open(dialect, cargs, cparams, creds.username, creds.password)
        if self.set_role_sql is not None:
            _run(dbapi_conn, self.set_role_sql)
        self.track(rec, creds.generation)
        if dialect.is_async:
            self.loop = asyncio.get_running_loop()
        logger.debug("new %s+%s connection as user %r (generation %d)", dialect.name,
                     dialect.driver, creds.username, creds.generation)
        return dbapi_conn

    def listeners_after(self, dialect: Dialect) -> bool:
        """Whether another ``do_connect`` listener runs after this one."""
        listeners = list(dialect.dispatch.do_connect)
        mine = [i for i, fn in enumerate(listeners) if fn == self.do_connect]
        return bool(mine) and mine[-1] < len(listeners) - 1

    def track(self, rec: ConnectionPoolEntry | None, generation: int | None) -> None:
        """Remember ``rec`` for rotation sweeps and stamp its generation.

        ``rec`` is ``None`` (or a stand-in) when the pool's creator is called outside the pool,
        which SQLAlchemy allows: that connection is the caller's to manage.
        """
        info = getattr(rec, "info", None)
        if rec is None or not isinstance(info, dict):
            return
        with self.entries_lock:
            self.entries.add(rec)
        if generation is not None:
            info[GENERATION_KEY] = generation

    # -- retiring idle connections ----------------------------------------------------------

    def on_lease_event(self, event: LeaseEvent) -> None:
        """Renewer thread: mark retired entries (no I/O), then sweep elsewhere."""
        engine = self.engine_ref()
        if engine is None:
            self.unsubscribe()
            return
        if isinstance(event, LeaseRotated):
            if not self.mark_retired():
                return
        elif isinstance(event, LeaseRevoked) and not self.holds(event.credentials.generation):
            return
        if not engine.dialect.is_async:
            threading.Thread(target=self.sweep, name="vaultdb-sqlalchemy-sweep",
                             daemon=True).start()
            return
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self.start_async_sweep, loop)
        except RuntimeError:  # the loop closed meanwhile
            logger.debug("event loop of %r is closed; no sweep", engine)

    def snapshot(self) -> list[ConnectionPoolEntry]:
        with self.entries_lock:
            return list(self.entries)

    def holds(self, generation: int) -> bool:
        return any(rec.info.get(GENERATION_KEY) == generation and rec.dbapi_connection
                   for rec in self.snapshot())

    def mark_retired(self) -> int:
        """Soft-invalidate open entries of retired generations; returns how many."""
        marked = 0
        for rec in self.snapshot():
            if rec.dbapi_connection is not None and not self.provider.is_current(
                    rec.info.get(GENERATION_KEY)):
                rec.invalidate(soft=True)
                marked += 1
        logger.debug("rotation: %d connection(s) of retired generations marked for "
                     "replacement at their next checkout", marked)
        return marked

    def start_async_sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        task = loop.create_task(self.sweep_async())
        self.tasks.add(task)  # asyncio keeps only a weak reference to running tasks
        task.add_done_callback(self.tasks.discard)

    async def sweep_async(self) -> None:
        from sqlalchemy.util import greenlet_spawn

        try:
            await greenlet_spawn(self.sweep)
        except Exception:
            logger.exception("vaultdb: sweeping retired connections failed")

    def sweep(self) -> None:
        """Replace idle connections of retired generations (one sweep at a time per engine)."""
        if not self.sweep_lock.acquire(blocking=False):
            self.sweep_again = True
            return
        try:
            while True:
                self.sweep_again = False
                engine = self.engine_ref()
                if engine is None:
                    return
                swept = _sweep_pool(engine.pool)
                logger.debug("swept %d idle connection(s)", swept)
                if not self.sweep_again:
                    return
        except Exception:
            logger.exception("vaultdb: sweeping retired connections failed")
        finally:
            self.sweep_lock.release()


def _open(dialect: Dialect, cargs: tuple[Any, ...], cparams: dict[str, Any], user: str,
          password: str) -> Any:
    cparams["user"] = user
    cparams["password"] = password
    return dialect.connect(*cargs, **cparams)


def _run(dbapi_conn: Any, statement: str) -> None:
    try:
        cursor = dbapi_conn.cursor()
        try:
            cursor.execute(statement)
        finally:
            cursor.close()
        dbapi_conn.commit()
    except BaseException:
        dbapi_conn.close()
        raise


def _sweep_pool(pool: Pool) -> int:
    """Check out every idle connection at once, then give them all back.

    The pool replaces each soft-invalidated one during its checkout (closing the old DBAPI
    connection and opening a new one through ``do_connect``), so this is where idle
    connections of retired credentials go away. Holding them together means a LIFO pool
    cannot hand the same one back twice. Pools without idle connections (NullPool) or with a
    single shared one (StaticPool, SingletonThreadPool) have nothing to sweep.
    """
    checkedin = getattr(pool, "checkedin", None)
    if checkedin is None:
        return 0
    taken = []
    try:
        for _ in range(checkedin()):
            if checkedin() <= 0:  # callers took the rest: do not make the pool grow
                break
            taken.append(pool.connect())
    finally:
        for fairy in taken:
            fairy.close()
    return len(taken)
