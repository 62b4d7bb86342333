"""Celery worker shutdown: revoke after Celery's own warm shutdown.

Call :func:`install` once where the Celery app is defined::

    from vaultdb.integrations.celery import install
    install()

It connects Celery's documented signals ``worker_process_shutdown`` (each prefork child, which
ends with ``os._exit`` and so never runs ``atexit``) and ``worker_shutdown`` (the main worker
process) to :func:`vaultdb.close_all`. Celery keeps its SIGTERM handling (warm shutdown: finish
the running tasks); revocation happens after it. Prefork children are forked: the core drops the
inherited leases, so a child only ever revokes its own.
"""

from __future__ import annotations

from typing import Any

try:
    from celery import signals  # type: ignore[import-not-found, unused-ignore]
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "vaultdb.integrations.celery needs Celery: pip install 'vaultdb-creds[celery]'"
    ) from exc

from vaultdb import close_all

__all__ = ["install", "uninstall"]

_UID = "vaultdb.close_all"


def _close(**_kwargs: Any) -> None:
    close_all()


def install() -> None:
    """Connect the shutdown signals (idempotent)."""
    signals.worker_process_shutdown.connect(_close, weak=False, dispatch_uid=_UID + ".child")
    signals.worker_shutdown.connect(_close, weak=False, dispatch_uid=_UID + ".main")


def uninstall() -> None:
    signals.worker_process_shutdown.disconnect(_close, dispatch_uid=_UID + ".child")
    signals.worker_shutdown.disconnect(_close, dispatch_uid=_UID + ".main")
