"""psycopg 3 connections and psycopg-pool pools that log in with Vault's dynamic credentials.

Hooks, per pool (nothing is patched globally):

* ``kwargs`` is a callable, psycopg-pool's documented way to give each new connection fresh
  credentials: it returns your connection arguments plus the provider's current user and
  password.
* ``connection_class`` is a subclass of yours whose ``connect`` adds what kwargs cannot: the
  connection is stamped with its credential generation (``_vaultdb_generation``), optionally
  runs ``SET ROLE``, and a login refused because the credentials were revoked or expired is
  retried once with refreshed credentials.
* ``check`` (run by ``getconn``): a connection of a retired generation is closed and refused,
  so the pool hands out another; never one a caller holds.
* :class:`~vaultdb.LeaseRotated` calls ``pool.drain()`` (psycopg-pool 3.3+): idle connections
  are closed and replaced now, connections out of the pool are closed when returned.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from vaultdb.credentials import Credentials
from vaultdb.events import LeaseRotated
from vaultdb.provider import CredentialProvider

from ._common import GENERATION_KEY, MissingExtraError, RefreshGuard, is_auth_failure

try:
    import psycopg
    import psycopg_pool
    from psycopg import sql
except ImportError as _error:  # pragma: no cover - depends on the environment
    raise MissingExtraError(getattr(_error, "name", None) or "psycopg", "psycopg") from _error

if TYPE_CHECKING:
    from psycopg.abc import ConnParam

__all__ = ["AsyncConnectionPool", "ConnectionPool", "RetiredConnectionError", "connect",
           "connect_async"]

logger = logging.getLogger("vaultdb.integrations.psycopg")

CT = TypeVar("CT", bound="psycopg.Connection[Any]")
ACT = TypeVar("ACT", bound="psycopg.AsyncConnection[Any]")


class RetiredConnectionError(psycopg.OperationalError):
    """Raised by the pool check for a connection whose credentials were rotated out."""


def connect(conninfo: str = "", *, provider: CredentialProvider, set_role: str | None = None,
            **kwargs: Any) -> psycopg.Connection[Any]:
    """``psycopg.connect`` with ``provider``'s current credentials (retried once if revoked)."""
    return _Hooks(provider, set_role).connect(psycopg.Connection.connect, conninfo, kwargs)


async def connect_async(conninfo: str = "", *, provider: CredentialProvider,
                        set_role: str | None = None, **kwargs: Any
                        ) -> psycopg.AsyncConnection[Any]:
    """``psycopg.AsyncConnection.connect`` with ``provider``'s current credentials."""
    return await _Hooks(provider, set_role).connect_async(psycopg.AsyncConnection.connect,
                                                          conninfo, kwargs)


class ConnectionPool(psycopg_pool.ConnectionPool[CT], Generic[CT]):
    """``psycopg_pool.ConnectionPool`` whose connections use ``provider``'s credentials.

    Takes every ``psycopg_pool.ConnectionPool`` argument; ``kwargs``, ``connection_class`` and
    ``check`` are wrapped (yours still apply), the rest pass through.
    """

    def __init__(self, conninfo: str | Callable[[], str] = "", *,
                 provider: CredentialProvider, set_role: str | None = None,
                 kwargs: dict[str, Any] | None = None,
                 connection_class: type[CT] | None = None,
                 check: Callable[[CT], None] | None = None, **pool_kwargs: Any) -> None:
        hooks = self._vaultdb_hooks = _Hooks(provider, set_role)
        base = dict(kwargs or {})
        parent = connection_class or cast("type[CT]", psycopg.Connection)
        hooked = _hooked_class(parent, lambda conninfo="", **kw: hooks.connect(
            parent.connect, conninfo, kw))

        is_current = provider.is_current

        def vault_check(conn: CT) -> None:
            if not is_current(conn.__dict__.get(GENERATION_KEY)):
                conn.close()
                raise RetiredConnectionError("vaultdb: the credentials of this connection "
                                             "were rotated out")
            if check is not None:
                check(conn)

        super().__init__(conninfo, kwargs=lambda: hooks.kwargs(base), connection_class=hooked,
                         check=vault_check, **pool_kwargs)
        self._vaultdb_unsubscribe = hooks.subscribe(self, _drain_sync)

    def close(self, timeout: float = 5.0) -> None:
        self._vaultdb_unsubscribe()
        super().close(timeout)


class AsyncConnectionPool(psycopg_pool.AsyncConnectionPool[ACT], Generic[ACT]):
    """``psycopg_pool.AsyncConnectionPool`` whose connections use ``provider``'s credentials."""

    def __init__(self, conninfo: str | Callable[[], str] = "", *,
                 provider: CredentialProvider, set_role: str | None = None,
                 kwargs: dict[str, Any] | None = None,
                 connection_class: type[ACT] | None = None,
                 check: Callable[[ACT], Awaitable[None]] | None = None,
                 **pool_kwargs: Any) -> None:
        hooks = self._vaultdb_hooks = _Hooks(provider, set_role)
        base = dict(kwargs or {})

        parent = connection_class or cast("type[ACT]", psycopg.AsyncConnection)

        async def connect(conninfo: str = "", **kw: Any) -> ACT:
            hooks.loop = asyncio.get_running_loop()
            return await hooks.connect_async(parent.connect, conninfo, kw)

        hooked = _hooked_class(parent, connect)

        is_current = provider.is_current

        async def vault_check(conn: ACT) -> None:
            if not is_current(conn.__dict__.get(GENERATION_KEY)):
                await conn.close()
                raise RetiredConnectionError("vaultdb: the credentials of this connection "
                                             "were rotated out")
            if check is not None:
                await check(conn)

        super().__init__(conninfo, kwargs=lambda: hooks.kwargs(base), connection_class=hooked,
                         check=vault_check, **pool_kwargs)
        self._vaultdb_unsubscribe = hooks.subscribe(self, _drain_async)

    async def close(self, timeout: float = 5.0) -> None:
        self._vaultdb_unsubscribe()
        await super().close(timeout)


class _Hooks:
    """What one pool (or one connect call) needs from the provider."""

    def __init__(self, provider: CredentialProvider, set_role: str | None) -> None:
        self.provider = provider
        self.guard = RefreshGuard(provider)
        self.set_role = None if set_role is None else sql.SQL("SET ROLE {}").format(
            sql.Identifier(set_role))
        self.loop: asyncio.AbstractEventLoop | None = None

    def kwargs(self, base: dict[str, Any]) -> dict[str, Any]:
        creds = self.provider.credentials()
        return {**base, "user": creds.username, "password": creds.password}

    def _prepare(self, kwargs: dict[str, Any]) -> tuple[dict[str, Any], Credentials | None]:
        """Arguments to connect with, and the credentials in them: ``None`` when they are older
        than the current ones (the pool resolved ``kwargs`` just before a rotation), so the
        connection is born retired."""
        creds = self.provider.credentials()
        if "password" not in kwargs:
            return {**kwargs, **_login(creds)}, creds
        if kwargs.get("user") == creds.username and kwargs["password"] == creds.password:
            return kwargs, creds
        return kwargs, None

    def _retry_with(self, error: Exception, used: Credentials | None) -> Credentials:
        if not is_auth_failure(error):
            raise error
        fresh = self.provider.credentials() if used is None else self.guard.refresh(used)
        if fresh is None:
            raise error
        logger.warning("the database refused user %r: its lease was revoked or expired; "
                       "retrying once as %r (generation %d)",
                       used.username if used else None, fresh.username, fresh.generation)
        return fresh

    def _retry_failed(self, error: Exception, used: Credentials | None,
                      fresh: Credentials) -> None:
        if used is not None and is_auth_failure(error):
            self.guard.retry_failed(fresh)

    def _done(self, conn: object, creds: Credentials | None) -> None:
        setattr(conn, GENERATION_KEY, creds.generation if creds else None)
        logger.debug("new psycopg connection as user %r (generation %s)",
                     creds.username if creds else None, creds.generation if creds else "retired")

    def connect(self, connect: Callable[..., CT], conninfo: str, kwargs: dict[str, Any]) -> CT:
        kwargs, used = self._prepare(kwargs)
        try:
            conn = connect(conninfo, **kwargs)
        except psycopg.OperationalError as error:
            fresh = self._retry_with(error, used)
            try:
                conn = connect(conninfo, **{**kwargs, **_login(fresh)})
            except psycopg.OperationalError as again:
                self._retry_failed(again, used, fresh)
                raise
            used = fresh
        if self.set_role is not None:
            try:
                conn.execute(self.set_role)
                if not conn.autocommit:
                    conn.commit()
            except BaseException:
                conn.close()
                raise
        self._done(conn, used)
        return conn

    async def connect_async(self, connect: Callable[..., Awaitable[ACT]], conninfo: str,
                            kwargs: dict[str, Any]) -> ACT:
        kwargs, used = self._prepare(kwargs)
        try:
            conn = await connect(conninfo, **kwargs)
        except psycopg.OperationalError as error:
            fresh = self._retry_with(error, used)
            try:
                conn = await connect(conninfo, **{**kwargs, **_login(fresh)})
            except psycopg.OperationalError as again:
                self._retry_failed(again, used, fresh)
                raise
            used = fresh
        if self.set_role is not None:
            try:
                await conn.execute(self.set_role)
                if not conn.autocommit:
                    await conn.commit()
            except BaseException:
                await conn.close()
                raise
        self._done(conn, used)
        return conn

    def subscribe(self, pool: Any, drain: Callable[[Any, _Hooks], None]) -> Callable[[], None]:
        """Drain ``pool`` on each rotation; holds the pool weakly."""
        ref = weakref.ref(pool)

        def on_rotated(event: LeaseRotated) -> None:
            target = ref()
            if target is None:
                unsubscribe()
            elif not target.closed:
                drain(target, self)

        unsubscribe = self.provider.subscribe(on_rotated, LeaseRotated)
        return unsubscribe


T = TypeVar("T")


def _hooked_class(parent: type[T], connect: Callable[..., Any]) -> type[T]:
    """A subclass for the pool's ``connection_class`` whose ``connect`` is ``connect``.

    Connections are still created by ``parent.connect``, so they are instances of ``parent``.
    """
    return type(parent.__name__, (parent,), {"connect": staticmethod(connect),
                                             "__module__": __name__})


def _login(creds: Credentials) -> dict[str, ConnParam]:
    return {"user": creds.username, "password": creds.password}


def _drain_sync(pool: psycopg_pool.ConnectionPool[Any], hooks: _Hooks) -> None:
    drain = getattr(pool, "drain", None)  # psycopg-pool 3.3+
    if drain is not None:
        logger.debug("rotation: draining pool %r", pool.name)
        drain()


def _drain_async(pool: psycopg_pool.AsyncConnectionPool[Any], hooks: _Hooks) -> None:
    loop = hooks.loop
    if getattr(pool, "drain", None) is None or loop is None or loop.is_closed():
        return
    logger.debug("rotation: draining pool %r", pool.name)
    future = asyncio.run_coroutine_threadsafe(pool.drain(), loop)
    future.add_done_callback(_log_failure)


def _log_failure(future: Any) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.warning("vaultdb: draining a pool after a rotation failed: %s",
                       future.exception())
