"""A URL is enough: SQLAlchemy's plugin and dialect entry points for vaultdb.

Two documented SQLAlchemy hooks, registered as entry points in pyproject.toml:

* ``sqlalchemy.plugins`` -> :class:`VaultDBPlugin` (``?plugin=vaultdb``). SQLAlchemy strips
  ``plugin=`` from the URL it keeps, so an engine built again from ``engine.url`` (Alembic's
  ``env.py``, SQLAlchemy's own ``testing_engine``, tools that clone engines) would connect
  without a password. The plugin therefore only rewrites the URL it is given
  (``CreateEnginePlugin.update_url``): ``postgresql+psycopg`` becomes
  ``postgresql+vaultdb_psycopg``, the ``vaultdb_*`` parameters stay, and the URL the engine
  keeps names vaultdb for good.
* ``sqlalchemy.dialects`` -> :class:`VaultDBDialect` under ``<backend>.vaultdb_<driver>``
  (and ``<backend>.vaultdb`` for the backend's default driver). Its ``get_dialect_cls()``
  hands over to the real driver's dialect (sync or asyncio), subclassed only to keep the
  ``vaultdb_*`` parameters away from the driver; its ``engine_created()`` attaches the shared
  provider for the URL's settings with :func:`vaultdb.integrations.sqlalchemy.attach`.

Settings are the ``VAULTDB_*``/``VAULT_*`` environment that ``from_env()`` reads, with the
URL's ``vaultdb_<name>`` query parameters laid over it (:mod:`vaultdb.settings`). Engines with
the same settings share one provider (:mod:`vaultdb._registry`, also used by Django).
The URL never carries a password: ``do_connect`` hands it to the driver.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING, Any

from vaultdb import settings
from vaultdb._registry import shared_provider
from vaultdb.provider import CredentialProvider

from ._common import MissingExtraError

try:
    from sqlalchemy.engine import URL, CreateEnginePlugin
except ImportError as _error:  # pragma: no cover - depends on the environment
    raise MissingExtraError("sqlalchemy", "sqlalchemy") from _error

from .sqlalchemy import _ATTR, attach

if TYPE_CHECKING:
    from sqlalchemy.engine import Dialect, Engine
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["VaultDBDialect", "VaultDBPlugin", "provider_for", "vaultdb_url"]

logger = logging.getLogger("vaultdb.integrations.sqlalchemy_plugin")

DRIVER_PREFIX = "vaultdb"


def vaultdb_url(url: str | URL) -> URL:
    """``url`` with its driver renamed to the vaultdb dialect (``postgresql+vaultdb_psycopg``).

    What ``?plugin=vaultdb`` does; useful to build the URL once and hand it to tools.
    """
    from sqlalchemy.engine import make_url

    url = make_url(url)
    backend, _, driver = url.drivername.partition("+")
    if driver == DRIVER_PREFIX or driver.startswith(DRIVER_PREFIX + "_"):
        return url
    driver = driver or url.get_dialect().driver
    return url.set(drivername=f"{backend}+{DRIVER_PREFIX}_{driver}")


def _real_url(url: URL) -> URL:
    """The URL of the driver vaultdb hands over to, without the ``vaultdb_*`` parameters."""
    backend, _, driver = url.drivername.partition("+")
    driver = driver[len(DRIVER_PREFIX):].lstrip("_")
    drivername = f"{backend}+{driver}" if driver else backend
    return url.set(drivername=drivername).difference_update_query(
        [key for key in url.query if key.startswith(settings.URL_PREFIX)])


_wrapped: dict[type[Dialect], type[Dialect]] = {}
_wrapped_lock = threading.Lock()


def _wrap(real: type[Dialect]) -> type[Dialect]:
    """``real`` with the ``vaultdb_*`` query parameters kept away from its driver (cached)."""
    with _wrapped_lock:
        wrapped = _wrapped.get(real)
        if wrapped is None:
            wrapped = _wrapped[real] = _subclass(real)
        return wrapped


def _subclass(real: type[Dialect]) -> type[Dialect]:

    def create_connect_args(self: Dialect, url: URL) -> Any:
        return real.create_connect_args(self, _real_url(url))

    return type(real.__name__, (real,), {
        "create_connect_args": create_connect_args,
        "supports_statement_cache": getattr(real, "supports_statement_cache", False),
        # The real dialect's module: SQLAlchemy finds a dialect's companions (its testing
        # provision hooks) from ``__module__``.
        "__module__": real.__module__,
        "__doc__": f"{real.__name__} logging in with vaultdb credentials.",
    })


class VaultDBDialect:
    """Dialect entry point ``<backend>+vaultdb_<driver>``: the real driver, plus vaultdb."""

    @classmethod
    def get_dialect_cls(cls, url: URL) -> type[Dialect]:
        return _wrap(_real_url(url).get_dialect())

    @classmethod
    def get_async_dialect_cls(cls, url: URL) -> type[Dialect]:
        return _wrap(_real_url(url).get_dialect(_is_async=True))

    @classmethod
    def engine_created(cls, engine: Engine) -> None:
        if getattr(engine, _ATTR, None) is not None:  # create_engine(..., provider=...)
            return
        env = settings.env_from_params(engine.url.query, os.environ)
        provider = shared_provider(env)
        attach(engine, provider, set_role=settings.raw(env, "VAULTDB_SET_ROLE"))
        logger.debug("%s engine uses the shared provider for role %r",
                     engine.url.drivername, provider.role)


class VaultDBPlugin(CreateEnginePlugin):
    """``?plugin=vaultdb``: switch the URL to the vaultdb dialect so copies stay on vaultdb."""

    def __init__(self, url: URL, kwargs: dict[str, Any]) -> None:
        super().__init__(url, kwargs)
        # Checked now, so a typo fails at create_engine() naming the URL parameter.
        settings.env_from_params(url.query, os.environ)

    def update_url(self, url: URL) -> URL:
        return vaultdb_url(url)


def provider_for(engine: Engine | AsyncEngine) -> CredentialProvider:
    """The provider an engine's connections log in with (e.g. for a health check)."""
    sync_engine = getattr(engine, "sync_engine", engine)
    attachment = getattr(sync_engine, _ATTR, None)
    if attachment is None:
        raise ValueError(f"{engine!r} does not use vaultdb")
    provider: CredentialProvider = attachment.provider
    return provider
