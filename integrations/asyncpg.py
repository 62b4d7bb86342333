"""asyncpg connections and pools that log in with Vault's dynamic credentials (no SQLAlchemy).

asyncpg's own hooks, per pool (nothing is patched globally):

* ``create_pool(connect=...)`` (asyncpg 0.30+), called "whenever the pool needs to make a new
  connection": each new connection logs in with the provider's current user and password, and
  a login refused because the credentials were revoked or expired is retried once with
  refreshed credentials (:class:`~vaultdb.integrations._common.RefreshGuard`).
* :class:`~vaultdb.LeaseRotated` (renewer thread) schedules ``Pool.expire_connections()`` on
  the pool's event loop, the call asyncpg documents for "credentials changed": idle
  connections are replaced at their next ``acquire()``, connections in use when they are
  released. Both happen inside the drain window, before the old user is revoked.

asyncpg connections have ``__slots__``, so the credential generation of each connection is
kept in a weak map (``generation_of(conn)``) instead of an attribute.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from vaultdb.credentials import Credentials
from vaultdb.events import LeaseEvent, LeaseRotated
from vaultdb.provider import CredentialProvider

from ._common import MissingExtraError, RefreshGuard, is_auth_failure

try:
    import asyncpg
except ImportError as _error:  # pragma: no cover - depends on the environment
    raise MissingExtraError("asyncpg", "asyncpg") from _error

__all__ = ["connect", "create_pool", "generation_of"]

logger = logging.getLogger("vaultdb.integrations.asyncpg")

Connect = Callable[..., Awaitable[Any]]
_generations: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()


_guards: weakref.WeakKeyDictionary[CredentialProvider, RefreshGuard] = (
    weakref.WeakKeyDictionary())


def _guard_for(provider: CredentialProvider) -> RefreshGuard:
    """One guard per provider, so separate ``connect()`` calls share what it learned."""
    guard = _guards.get(provider)
    if guard is None:
        guard = _guards.setdefault(provider, RefreshGuard(provider))
    return guard


def generation_of(conn: Any) -> int | None:
    """The credential generation ``conn`` (or a pool's proxy of it) logged in with."""
    raw = getattr(conn, "_con", None) or conn  # PoolConnectionProxy wraps the connection
    try:
        return _generations.get(raw)
    except TypeError:  # not weakly referenceable: not a connection vaultdb made
        return None


async def connect(dsn: str | None = None, *, provider: CredentialProvider,
                  set_role: str | None = None, **kwargs: Any) -> asyncpg.Connection:
    """``asyncpg.connect`` with ``provider``'s current credentials (retried once if revoked)."""
    conn: asyncpg.Connection = await _Hooks(provider, set_role, asyncpg.connect).connect(
        dsn, **kwargs)
    return conn


def create_pool(dsn: str | None = None, *, provider: CredentialProvider,
                set_role: str | None = None, connect: Connect | None = None,
                **pool_kwargs: Any) -> asyncpg.Pool:
    """``asyncpg.create_pool`` whose connections use ``provider``'s credentials.

    Use it as asyncpg's: ``pool = await create_pool(...)`` or ``async with create_pool(...)``.
    ``dsn`` and ``pool_kwargs`` carry no user or password. Your own ``connect`` still runs
    (with the credentials added); ``set_role`` runs ``SET ROLE`` on each new connection.
    """
    hooks = _Hooks(provider, set_role, connect or asyncpg.connect)
    pool = asyncpg.create_pool(dsn, connect=hooks.connect, **pool_kwargs)
    hooks.watch(pool)
    return pool


class _Hooks:
    """What one pool (or one ``connect()`` call) shares: provider, guard, event loop."""

    def __init__(self, provider: CredentialProvider, set_role: str | None,
                 base_connect: Connect) -> None:
        self.provider = provider
        self.guard = _guard_for(provider)
        self.base_connect = base_connect
        self.set_role_sql = None if set_role is None else (
            'SET ROLE "{}"'.format(set_role.replace('"', '""')))
        self.loop: asyncio.AbstractEventLoop | None = None
        self.pool: asyncpg.Pool | None = None
        self.unsubscribe: Callable[[], None] = lambda: None

    async def connect(self, *args: Any, **kwargs: Any) -> Any:
        self.loop = asyncio.get_running_loop()
        creds = await self._credentials()
        try:
            conn = await self._open(creds, args, kwargs)
        except Exception as error:
            if not is_auth_failure(error):
                raise
            fresh = await asyncio.to_thread(self.guard.refresh, creds)
            if fresh is None:
                raise
            logger.warning("the database refused user %r (generation %d): its lease was revoked "
                           "or expired; retrying once as %r (generation %d)", creds.username,
                           creds.generation, fresh.username, fresh.generation)
            try:
                conn = await self._open(fresh, args, kwargs)
            except Exception as again:
                if is_auth_failure(again):
                    self.guard.retry_failed(fresh)
                raise
            creds = fresh
        if not self.provider.is_current(creds.generation):  # rotated while connecting
            await conn.close()
            creds = await self._credentials()
            conn = await self._open(creds, args, kwargs)
        _generations[conn] = creds.generation
        logger.debug("new asyncpg connection as user %r (generation %d)", creds.username,
                     creds.generation)
        return conn

    async def _credentials(self) -> Credentials:
        """The first fetch talks to Vault: off the event loop. Later calls return a snapshot."""
        if self.provider.generation is None:
            return await asyncio.to_thread(self.provider.credentials)
        return self.provider.credentials()

    async def _open(self, creds: Credentials, args: tuple[Any, ...], kwargs: dict[str, Any]
                    ) -> Any:
        conn = await self.base_connect(*args, **{**kwargs, "user": creds.username,
                                                 "password": creds.password})
        if self.set_role_sql is not None:
            try:
                await conn.execute(self.set_role_sql)
            except BaseException:
                conn.terminate()
                raise
        return conn

    # -- rotation ---------------------------------------------------------------------------

    def watch(self, pool: asyncpg.Pool) -> None:
        # asyncpg pools have __slots__ without __weakref__: held strongly until the first
        # event after the pool is closed.
        self.pool = pool
        self.unsubscribe = self.provider.subscribe(self.on_rotated, LeaseRotated)

    def on_rotated(self, event: LeaseEvent) -> None:
        """Renewer thread: have the pool's loop expire its connections (no I/O here)."""
        pool = self.pool
        if pool is None or pool.is_closing():
            self.unsubscribe()
            self.pool = None
            return
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._expire, pool)
        except RuntimeError:  # the loop closed meanwhile
            logger.debug("event loop of %r is closed; nothing to expire", pool)

    def _expire(self, pool: asyncpg.Pool) -> None:
        task = asyncio.ensure_future(pool.expire_connections())
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        logger.debug("rotation: asyncpg pool connections expired; replaced at next acquire")
