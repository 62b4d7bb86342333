"""Process lifecycle in one place: atexit, SIGTERM, fork.

* ``atexit``: close (revoke) every provider this process owns.
* SIGTERM: by default it kills the process *without* running ``atexit``. When the
  disposition is still the default (nobody else handles SIGTERM) and we are on the main
  thread, install a handler that revokes, then restores the default and re-sends the signal,
  so the process exits exactly as SIGTERM would have made it (status 143). Servers that handle
  SIGTERM themselves (gunicorn, uvicorn, Celery) keep their graceful drain: we never replace a
  handler we did not install; their hooks in ``vaultdb.integrations`` revoke after the drain.
* fork: ``os.register_at_fork(after_in_child=...)`` drops every provider's inherited state in
  the child, so a child never renews or revokes its parent's leases or token; it gets its own
  on first use.

Every path is idempotent and only touches providers owned by the current pid.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import threading
import time
import weakref
from types import FrameType
from typing import Protocol

__all__ = ["close_all", "install_sigterm_handler", "register"]

logger = logging.getLogger(__name__)


class _Closable(Protocol):
    revoke_timeout: float

    def close(self, timeout: float | None = None) -> None: ...

    def _after_fork_in_child(self) -> None: ...


_providers: weakref.WeakSet[_Closable] = weakref.WeakSet()
#: Forks this process came out of (as a child); login sessions reset once per fork.
forks = 0
_hooks_installed = False
_sigterm_installed = False
_hooks_lock = threading.Lock()


def register(provider: _Closable, *, handle_sigterm: bool) -> None:
    """Track a started provider so exit paths can close it."""
    global _hooks_installed
    with _hooks_lock:
        _providers.add(provider)
        if not _hooks_installed:
            atexit.register(_close_all_at_exit)
            os.register_at_fork(after_in_child=_after_fork_in_child)
            _hooks_installed = True
    if handle_sigterm:
        install_sigterm_handler()


def unregister(provider: _Closable) -> None:
    _providers.discard(provider)


def close_all(timeout: float | None = None) -> None:
    """Close every provider of this process (revoking what it holds). Idempotent.

    This is what server hooks call: gunicorn ``worker_exit``/``on_exit``, ASGI lifespan
    shutdown, Celery ``worker_process_shutdown``. All providers share one budget: ``timeout``,
    or the largest ``revoke_timeout`` among them, so a pod's grace period is never overrun by
    adding up one budget per provider.
    """
    providers = list(_providers)
    if not providers:
        return
    budget = timeout if timeout is not None else max(p.revoke_timeout for p in providers)
    end = time.monotonic() + max(0.0, budget)
    for provider in providers:
        try:
            provider.close(timeout=max(0.0, end - time.monotonic()))
        except Exception:
            logger.exception("vaultdb: closing a provider failed")


def _close_all_at_exit() -> None:
    close_all()


def _after_fork_in_child() -> None:
    # Providers stay registered: after the reset they own nothing, and whatever they fetch
    # in the child is the child's to revoke. The SIGTERM handler survives fork the same way.
    global forks
    forks += 1
    for provider in list(_providers):
        provider._after_fork_in_child()


def install_sigterm_handler() -> bool:
    """Install the revoke-then-die SIGTERM handler if SIGTERM is unhandled. Returns True if so."""
    global _sigterm_installed
    if _sigterm_installed:
        return True
    if threading.current_thread() is not threading.main_thread():
        logger.debug("not on the main thread: SIGTERM handler not installed (atexit and server "
                     "hooks still revoke)")
        return False
    try:
        current = signal.getsignal(signal.SIGTERM)
    except (ValueError, OSError):
        return False
    if current is not signal.SIG_DFL:
        logger.debug("SIGTERM already handled by %r: leaving it alone", current)
        return False
    signal.signal(signal.SIGTERM, _on_sigterm)
    _sigterm_installed = True
    logger.debug("SIGTERM handler installed (revoke, then exit as SIGTERM would)")
    return True


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    global _sigterm_installed
    logger.info("SIGTERM received: revoking vaultdb credentials before exit")
    close_all()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _sigterm_installed = False
    os.kill(os.getpid(), signal.SIGTERM)
