"""Time, and the ways to wait on it, as one injectable object.

The engine, its Vault client and the renewer never read ``time`` or build ``threading``
primitives themselves: they ask a :class:`Clock`. Production uses :data:`SYSTEM_CLOCK`
(``time.monotonic``, real locks and events). The lifetime simulation
(:mod:`vaultdb.testing.sim`) passes a virtual clock whose waits are cooperative, so hours of a
process's life, and chosen thread interleavings, run deterministically in milliseconds.
"""

from __future__ import annotations

import threading
import time as _time
from collections.abc import Callable
from types import TracebackType
from typing import Protocol

__all__ = ["SYSTEM_CLOCK", "Clock", "EventLike", "LockLike", "SystemClock", "ThreadLike"]


class LockLike(Protocol):
    """The part of ``threading.RLock`` the engine uses."""

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool: ...

    def release(self) -> None: ...

    def __enter__(self) -> bool: ...

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None, /) -> None: ...


class EventLike(Protocol):
    """The part of ``threading.Event`` the renewer uses."""

    def set(self) -> None: ...

    def clear(self) -> None: ...

    def wait(self, timeout: float | None = None) -> bool: ...


class ThreadLike(Protocol):
    """A started background thread."""

    def join(self, timeout: float | None = None) -> None: ...

    def is_alive(self) -> bool: ...

    def is_current(self) -> bool: ...


class Clock(Protocol):
    """Monotonic time for deadlines, wall time for display, and blocking waits."""

    def monotonic(self) -> float: ...

    def time(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...

    def lock(self) -> LockLike: ...

    def event(self) -> EventLike: ...

    def start_thread(self, name: str, target: Callable[[], None]) -> ThreadLike: ...


class _Thread(threading.Thread):
    def is_current(self) -> bool:
        return self is threading.current_thread()


class SystemClock:
    """The real thing: ``time`` and ``threading``."""

    monotonic = staticmethod(_time.monotonic)
    time = staticmethod(_time.time)
    sleep = staticmethod(_time.sleep)

    def lock(self) -> LockLike:
        return threading.RLock()

    def event(self) -> EventLike:
        return threading.Event()

    def start_thread(self, name: str, target: Callable[[], None]) -> ThreadLike:
        """A daemon thread: Python joins non-daemon threads *before* ``atexit`` runs."""
        thread = _Thread(target=target, name=name, daemon=True)
        thread.start()
        return thread

    def __repr__(self) -> str:
        return "SystemClock()"


SYSTEM_CLOCK: Clock = SystemClock()
