"""Django's native pool (``OPTIONS["pool"]``, Django 5.1+, psycopg 3) with rotating credentials.

Django builds its ``psycopg_pool.ConnectionPool`` once per alias with fixed ``kwargs``, so the
credentials would freeze. Here the pool gets (all documented psycopg-pool parameters):

* ``connection_class``: a ``psycopg.Connection`` subclass whose ``connect`` logs in with the
  provider's current credentials for every physical connection and stamps it with
  ``(provider, generation)``;
* ``check``: rejects (and closes) a connection of a retired generation when it is handed out,
  then runs Django's health check when ``CONN_HEALTH_CHECKS`` is on;
* ``configure``: time zone as Django does, and ``SET ROLE`` composed on the raw connection;
* on each new lease (rotation), ``pool.drain()`` (psycopg-pool 3.3+): idle connections close at
  once, borrowed ones when they come back, during the drain window, before the old lease is
  revoked.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from vaultdb import CredentialProvider
from vaultdb.events import LeaseCreated

from .._backend import connect_with_credentials
from ..registry import get_provider
from ._connect import set_role

__all__ = ["PoolHooks", "VaultDBConnection", "make_pool"]

logger = logging.getLogger("vaultdb.integrations.django")

_PROVIDER_KWARG = "_vaultdb_provider"


class VaultDBConnection(psycopg.Connection[Any]):
    """Pool connection class: logs in with the provider's current credentials."""

    _vaultdb_stamp: tuple[CredentialProvider, int] | None = None

    @classmethod
    def connect(cls, conninfo: str = "", **kwargs: Any) -> VaultDBConnection:  # type: ignore[override]
        provider = kwargs.pop(_PROVIDER_KWARG)()

        def login(params: dict[str, Any]) -> VaultDBConnection:
            return super(VaultDBConnection, cls).connect(conninfo, **params)

        conn, creds = connect_with_credentials(provider, login, kwargs, psycopg.OperationalError)
        conn._vaultdb_stamp = (provider, creds.generation)
        return conn


class PoolHooks:
    """The pool's callbacks, bound to one ``DATABASES`` entry (not to a thread's wrapper)."""

    def __init__(self, settings_dict: Mapping[str, Any], *, role: str | None,
                 configure_timezone: Callable[[Any], object], health_checks: bool) -> None:
        self.settings_dict = settings_dict
        self.role = role
        self.configure_timezone = configure_timezone
        self.health_checks = health_checks
        self._pool: weakref.ref[ConnectionPool[Any]] | None = None
        self._lock = threading.Lock()
        self._subscribed: CredentialProvider | None = None
        self._unsubscribe: Callable[[], None] | None = None

    def provider(self) -> CredentialProvider:
        provider = get_provider(self.settings_dict)
        if provider is not self._subscribed:
            with self._lock:
                if provider is not self._subscribed:
                    if self._unsubscribe is not None:
                        self._unsubscribe()
                    self._unsubscribe = provider.subscribe(self._on_lease, LeaseCreated)
                    self._subscribed = provider
        return provider

    def unsubscribe(self) -> None:
        with self._lock:
            if self._unsubscribe is not None:
                self._unsubscribe()
            self._unsubscribe = self._subscribed = None

    def configure(self, conn: Any) -> None:
        self.configure_timezone(conn)
        if self.role:
            set_role(conn, self.role)

    def check(self, conn: Any) -> None:
        stamp = getattr(conn, "_vaultdb_stamp", None)
        provider = self.provider()
        if stamp is None or stamp[0] is not provider or not provider.is_current(stamp[1]):
            conn.close()  # closed before raising, or the pool would hand it out again
            raise psycopg.OperationalError("pool connection opened with retired credentials")
        if self.health_checks:
            ConnectionPool.check_connection(conn)

    def _on_lease(self, event: LeaseCreated) -> None:
        pool = self._pool() if self._pool is not None else None
        if pool is None or pool.closed or event.credentials.generation <= 1:
            return
        drain = getattr(pool, "drain", None)  # psycopg-pool 3.3+; else the check retires them
        if drain is not None:
            logger.debug("vaultdb: draining pool %r after a new lease", pool.name)
            drain()


def make_pool(wrapper: Any, role: str | None, pool_options: dict[str, Any]
              ) -> ConnectionPool[Any]:
    """Django's pool construction, with the hooks above."""
    settings_dict = wrapper.settings_dict
    kwargs = wrapper.get_connection_params()
    kwargs["autocommit"] = True  # as Django does; it sets autocommit properly later on
    hooks = PoolHooks(settings_dict, role=role,
                      configure_timezone=wrapper._configure_timezone,
                      health_checks=bool(settings_dict["CONN_HEALTH_CHECKS"]))
    kwargs[_PROVIDER_KWARG] = hooks.provider
    pool: ConnectionPool[Any] = ConnectionPool(
        kwargs=kwargs, connection_class=VaultDBConnection, open=False,
        configure=hooks.configure, check=hooks.check, **pool_options)
    hooks._pool = weakref.ref(pool)
    pool._vaultdb_hooks = hooks  # type: ignore[attr-defined]
    return pool
