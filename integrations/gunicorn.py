"""gunicorn server hooks: revoke after gunicorn's graceful drain, never before.

In ``gunicorn.conf.py``::

    from vaultdb.integrations.gunicorn import on_exit, post_fork, worker_exit

gunicorn calls these documented hooks (docs: "Server Hooks") where they belong:

* ``worker_exit(server, worker)`` runs in the worker after it stopped serving (graceful
  SIGTERM, ``max_requests`` restart, SIGQUIT/SIGINT, timeout abort): revokes the worker's lease.
* ``on_exit(server)`` runs in the master just before it exits, after the workers are gone:
  revokes what the master itself holds (only possible with ``--preload`` code that connected).
* ``post_fork(server, worker)`` runs in each new worker: it only checks the fork handling
  (the core already drops inherited leases via ``os.register_at_fork``), logging at DEBUG.

gunicorn installs its own SIGTERM handlers (master, and each worker before it loads the app),
so vaultdb never installs one there. If your config already defines these hooks, call ours
from yours. Each hook is bounded by the providers' ``revoke_timeout`` (10 s by default), well
inside gunicorn's ``graceful_timeout`` (30 s).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from vaultdb import close_all

__all__ = ["on_exit", "post_fork", "worker_exit"]

logger = logging.getLogger(__name__)


def post_fork(server: Any, worker: Any) -> None:
    """gunicorn ``post_fork`` hook: nothing to undo (the core resets providers in children)."""
    logger.debug("vaultdb: gunicorn worker %s forked; it fetches its own credentials", os.getpid())


def worker_exit(server: Any, worker: Any) -> None:
    """gunicorn ``worker_exit`` hook: revoke this worker's leases after it stopped serving."""
    logger.info("vaultdb: gunicorn worker %s exiting; revoking its credentials", os.getpid())
    close_all()


def on_exit(server: Any) -> None:
    """gunicorn ``on_exit`` hook: revoke whatever the master process holds."""
    close_all()
