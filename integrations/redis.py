"""redis-py clients and pools (sync and asyncio) that log in as Vault-issued Redis ACL users.

Hooks, per pool (nothing is patched globally):

* ``credential_provider``, redis-py's documented hook for credentials that change
  (``redis.credentials.CredentialProvider``, asked on every new connection by ``redis.Redis``,
  ``redis.asyncio.Redis``, their pools, and kombu/Celery's redis transport):
  :class:`RedisCredentials` returns the provider's current ACL user and password.
* ``connection_class``, the pool's documented connection factory: :func:`attach` swaps in a
  subclass of the pool's own class. Each connection records the credentials it logged in with
  (generation under ``_vaultdb_generation``); the pool calls ``connect()`` on every checkout,
  where a connection of a retired generation is disconnected and opens again with the current
  user, before any command. A login refused because the user was revoked is retried once
  with refreshed credentials.
* :class:`~vaultdb.LeaseRotated`: idle connections are disconnected at once
  (``pool.disconnect(inuse_connections=False)``), so a quiet pool holds no connection of the
  old user when it is revoked. Vault's ``ACL DELUSER`` disconnects the old user's clients, so
  a connection held by a caller past the drain window is cut; redis-py's retry (or the next
  checkout) reopens it with the current user.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from vaultdb.credentials import Credentials
from vaultdb.events import LeaseRotated
from vaultdb.provider import CredentialProvider

from ._common import GENERATION_KEY, MissingExtraError, RefreshGuard, is_auth_failure

try:
    import redis
    import redis.asyncio
    from redis.credentials import CredentialProvider as _RedisCredentialProvider
except ImportError as _error:  # pragma: no cover - depends on the environment
    raise MissingExtraError("redis", "redis") from _error

__all__ = ["RedisCredentials", "attach", "from_url", "from_url_async"]

logger = logging.getLogger("vaultdb.integrations.redis")

_ATTR = "_vaultdb_hooks"
_USED = "_vaultdb_credentials"
T = TypeVar("T")
R = TypeVar("R", "redis.Redis", "redis.asyncio.Redis", "redis.ConnectionPool",
            "redis.asyncio.ConnectionPool")


class RedisCredentials(_RedisCredentialProvider):  # type: ignore[misc]
    """A redis-py ``credential_provider``: ``provider``'s current ACL user and password.

    On its own (``redis.Redis(credential_provider=RedisCredentials(provider))``, or a kombu
    broker URL's ``?credential_provider=``) every new connection gets current credentials;
    :func:`attach` also retires pooled connections of rotated-out users.
    """

    def __init__(self, provider: CredentialProvider) -> None:
        self.provider = provider

    def _pair(self, creds: Credentials) -> tuple[str, str]:
        return creds.username, creds.password

    def get_credentials(self) -> tuple[str, str]:
        return self._pair(self.provider.credentials())

    async def get_credentials_async(self) -> tuple[str, str]:
        # credentials() blocks only for a fetch, but then it must not block the event loop.
        return self._pair(await asyncio.to_thread(self.provider.credentials))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} role={self.provider.role!r}>"


class _ConnectionCredentials(RedisCredentials):
    """The credential provider of one connection: stamps it with what it logged in with."""

    def __init__(self, provider: CredentialProvider, conn: object) -> None:
        super().__init__(provider)
        self.conn = weakref.ref(conn)

    def _pair(self, creds: Credentials) -> tuple[str, str]:
        conn = self.conn()
        if conn is not None:
            setattr(conn, _USED, creds)
            setattr(conn, GENERATION_KEY, creds.generation)
        return creds.username, creds.password


class _Hooks:
    """What one pool needs from the provider."""

    def __init__(self, provider: CredentialProvider) -> None:
        self.provider = provider
        self.guard = RefreshGuard(provider)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.unsubscribe: Callable[[], None] = lambda: None

    def retired(self, conn: object) -> bool:
        generation = getattr(conn, GENERATION_KEY, None)
        return generation is not None and not self.provider.is_current(generation)

    def refused(self, conn: object, error: Exception) -> Credentials | None:
        """Credentials to retry a refused login with, or ``None`` (raise the error)."""
        used: Credentials | None = getattr(conn, _USED, None)
        if used is None or not is_auth_failure(error):
            return None
        fresh = self.guard.refresh(used)
        if fresh is not None:
            logger.warning("Redis refused ACL user %r (generation %d): its lease was revoked or "
                           "expired; retrying once as %r (generation %d)", used.username,
                           used.generation, fresh.username, fresh.generation)
        return fresh


def _sync_class(base: type[T], hooks: _Hooks) -> type[T]:
    health = hasattr(base, "connect_check_health")  # redis-py 6+: reconnects go through it

    class Connection(base):  # type: ignore[valid-type, misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.credential_provider = _ConnectionCredentials(hooks.provider, self)

        def connect(self) -> None:  # the pool calls it at every checkout
            if hooks.retired(self):
                self.disconnect()
            if health:
                return super().connect()  # type: ignore[no-any-return]
            return self._vaultdb_open(super().connect)

        def connect_check_health(self, *args: Any, **kwargs: Any) -> None:
            parent = super().connect_check_health
            return self._vaultdb_open(lambda: parent(*args, **kwargs))

        def _vaultdb_open(self, do: Callable[[], None]) -> None:
            try:
                return do()
            except redis.AuthenticationError as error:
                fresh = hooks.refused(self, error)
                if fresh is None:
                    raise
            try:
                return do()
            except redis.AuthenticationError:
                hooks.guard.retry_failed(fresh)
                raise

    return _named(Connection, base)


def _async_class(base: type[T], hooks: _Hooks) -> type[T]:
    health = hasattr(base, "connect_check_health")

    class Connection(base):  # type: ignore[valid-type, misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.credential_provider = _ConnectionCredentials(hooks.provider, self)

        async def connect(self) -> None:
            hooks.loop = asyncio.get_running_loop()
            if hooks.retired(self):
                await self.disconnect()
            if health:
                return await super().connect()  # type: ignore[no-any-return]
            return await self._vaultdb_open(super().connect)

        async def connect_check_health(self, *args: Any, **kwargs: Any) -> None:
            parent = super().connect_check_health
            return await self._vaultdb_open(lambda: parent(*args, **kwargs))

        async def _vaultdb_open(self, do: Callable[[], Any]) -> None:
            try:
                return await do()  # type: ignore[no-any-return]
            except redis.AuthenticationError as error:
                fresh = await asyncio.to_thread(hooks.refused, self, error)
                if fresh is None:
                    raise
            try:
                return await do()  # type: ignore[no-any-return]
            except redis.AuthenticationError:
                hooks.guard.retry_failed(fresh)
                raise

    return _named(Connection, base)


def _named(cls: type[Any], base: type[T]) -> type[T]:
    cls.__name__ = cls.__qualname__ = f"Vault{base.__name__}"
    return cls


def attach(target: R, provider: CredentialProvider) -> R:
    """Make a redis-py client or pool (sync or asyncio) log in as ``provider``'s ACL user.

    Call it before the first command. A user or password already configured is dropped (with
    a warning); attaching a pool twice raises ``ValueError``. Returns ``target``.
    """
    pool: Any = getattr(target, "connection_pool", target)
    if not hasattr(pool, "connection_kwargs") or not hasattr(pool, "connection_class"):
        raise TypeError(f"attach() takes a redis.Redis or redis.asyncio.Redis client or one of "
                        f"their connection pools, not {type(target).__name__}")
    if getattr(pool, _ATTR, None) is not None:
        raise ValueError(f"{pool!r} is already attached to a vaultdb provider")
    kwargs = pool.connection_kwargs
    had_login = kwargs.pop("password", None) is not None
    if kwargs.pop("username", None) is not None or had_login:
        logger.warning("%r had a user or password; vaultdb replaces it with the provider's "
                       "credentials", pool)
    kwargs["credential_provider"] = RedisCredentials(provider)
    hooks = _Hooks(provider)
    is_async = isinstance(pool, redis.asyncio.ConnectionPool)
    pool.connection_class = (_async_class if is_async else _sync_class)(pool.connection_class,
                                                                         hooks)
    setattr(pool, _ATTR, hooks)
    ref = weakref.ref(pool)

    def on_rotated(_event: LeaseRotated) -> None:  # renewer thread: no waiting here
        target_pool = ref()
        if target_pool is None:
            hooks.unsubscribe()
            return
        if not is_async:
            target_pool.disconnect(inuse_connections=False)
        elif hooks.loop is not None and not hooks.loop.is_closed():
            future = asyncio.run_coroutine_threadsafe(
                target_pool.disconnect(inuse_connections=False), hooks.loop)
            future.add_done_callback(_log_failure)
        else:
            return  # no connection was ever opened: nothing to disconnect
        logger.debug("rotation: idle connections of %r disconnected", target_pool)

    hooks.unsubscribe = provider.subscribe(on_rotated, LeaseRotated)
    return target


def from_url(url: str, *, provider: CredentialProvider, **kwargs: Any) -> redis.Redis:
    """``redis.Redis.from_url(url, **kwargs)`` logging in as ``provider``'s ACL user.

    ``url`` carries no user or password, e.g. ``redis://redis.internal:6379/0``.
    """
    return attach(redis.Redis.from_url(url, **kwargs), provider)


def from_url_async(url: str, *, provider: CredentialProvider, **kwargs: Any
                   ) -> redis.asyncio.Redis:
    """``redis.asyncio.Redis.from_url(url, **kwargs)`` logging in as ``provider``'s user."""
    return attach(redis.asyncio.Redis.from_url(url, **kwargs), provider)


def _log_failure(future: Any) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.warning("vaultdb: disconnecting idle Redis connections after a rotation failed: "
                       "%s", future.exception())
