"""The provider's one background thread.

It runs ``step()`` (the lease engine's maintenance: renew, rotate, revoke what drained), then
waits until the next due time or until woken. Every exception is caught and logged: the
thread never dies of one. Daemon, because Python joins non-daemon threads *before* running
``atexit``, which is where leases get revoked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ._clock import SYSTEM_CLOCK, Clock, ThreadLike

__all__ = ["Renewer"]

logger = logging.getLogger(__name__)

#: Never sleep longer than this, so a changed clock or a missed wake-up heals itself.
MAX_SLEEP = 60.0
#: After an unexpected exception in ``step``, wait this long before trying again.
ERROR_PAUSE = 1.0


class Renewer:
    def __init__(self, name: str, step: Callable[[], float], clock: Clock = SYSTEM_CLOCK
                 ) -> None:
        self.name = name
        self._step = step
        self._clock = clock
        self._wake = clock.event()
        self._stopping = False
        self._thread: ThreadLike | None = None

    def start(self) -> None:
        self._thread = self._clock.start_thread(self.name, self._run)

    def wake(self) -> None:
        """Run ``step`` again now (new credentials, a rotation requested, closing)."""
        self._wake.set()

    def stop(self, timeout: float) -> bool:
        """Ask the thread to finish and wait up to ``timeout``; False if it did not."""
        self._stopping = True
        self._wake.set()
        thread = self._thread
        if thread is None or thread.is_current():
            return True
        if thread.is_alive():
            thread.join(timeout)
        if thread.is_alive():
            logger.warning(
                "vaultdb renewer thread %r did not stop within %.1fs; it is a daemon and will "
                "not block exit (a Vault call may be hanging: check VAULTDB_REQUEST_TIMEOUT)",
                self.name, timeout)
            return False
        return True

    def _run(self) -> None:
        logger.debug("renewer %r started", self.name)
        while not self._stopping:
            try:
                delay = self._step()
            except Exception:
                logger.exception("vaultdb renewer %r: unexpected error (will retry)", self.name)
                delay = ERROR_PAUSE
            if self._stopping:
                break
            self._wake.wait(max(0.0, min(delay, MAX_SLEEP)))
            self._wake.clear()
        logger.debug("renewer %r stopped", self.name)
