"""A virtual clock whose threads are greenlets, scheduled deterministically.

:class:`SimClock` implements :class:`vaultdb._clock.Clock`. Every "thread" the code under test
starts (the renewer, a prefetch) and every application thread the simulation plays is a
greenlet; exactly one runs at a time, and control changes hands only where real code would
block: ``sleep``, a lock that is held, an event wait, a thread join. Time moves only when every
thread is blocked: it jumps to the earliest wake-up. When several threads could run at the same
instant, a seeded random choice picks one, so interleavings vary from seed to seed but replay
exactly for a given seed.

So the lease engine's real lock, retries and timeouts run as written, hours of virtual time take
milliseconds, and a failing seed reproduces bit for bit.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from types import TracebackType

import greenlet

__all__ = ["SimClock", "SimDeadlock", "SimThread"]


class SimDeadlock(AssertionError):
    """Every simulated thread is blocked forever."""


class SimThread:
    """A simulated thread: a greenlet plus what it waits for."""

    def __init__(self, clock: SimClock, name: str, target: Callable[[], None],
                 start_at: float) -> None:
        self.clock = clock
        self.name = name
        self.done = False
        self.error: BaseException | None = None
        self.wake_at = start_at
        self.ready: Callable[[], bool] | None = None
        self.glet = greenlet.greenlet(self._body, parent=clock.hub)
        self._target = target

    def _body(self) -> None:
        try:
            self._target()
        except BaseException as exc:  # recorded; the harness decides whether it is a bug
            self.error = exc
        finally:
            self.done = True

    def join(self, timeout: float | None = None) -> None:
        self.clock.wait_until(lambda: self.done, timeout)

    def is_alive(self) -> bool:
        return not self.done

    def is_current(self) -> bool:
        return self.clock.current is self

    def __repr__(self) -> str:
        return f"<SimThread {self.name} {'done' if self.done else 'alive'}>"


class SimLock:
    """A reentrant lock whose waits are cooperative and timed on the virtual clock."""

    def __init__(self, clock: SimClock) -> None:
        self.clock = clock
        self.owner: SimThread | None = None
        self.count = 0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        me = self.clock.current
        if self.owner is not None and self.owner is not me:
            if not blocking:
                return False
            free = self.clock.wait_until(lambda: self.owner is None,
                                         None if timeout < 0 else timeout)
            if not free:
                return False
        self.owner = me
        self.count += 1
        return True

    def release(self) -> None:
        assert self.owner is self.clock.current, "release of a lock this thread does not hold"
        self.count -= 1
        if self.count == 0:
            self.owner = None

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None, /) -> None:
        self.release()


class SimEvent:
    """``threading.Event`` on the virtual clock."""

    def __init__(self, clock: SimClock) -> None:
        self.clock = clock
        self.flag = False

    def set(self) -> None:
        self.flag = True

    def clear(self) -> None:
        self.flag = False

    def is_set(self) -> bool:
        return self.flag

    def wait(self, timeout: float | None = None) -> bool:
        return self.clock.wait_until(lambda: self.flag, timeout)


class SimClock:
    """Virtual time and cooperative threads (see the module doc)."""

    #: Where virtual monotonic time starts (not 0, which the engine uses as "invalid").
    START = 1000.0

    def __init__(self, rng: random.Random, *, start: float = START,
                 wall_start: float = 1_800_000_000.0) -> None:
        self.rng = rng
        self.now = start
        self._wall_offset = wall_start - start
        self.hub = greenlet.getcurrent()
        self.current: SimThread | None = None
        self.threads: list[SimThread] = []
        self.switches = 0

    # -- the Clock protocol -----------------------------------------------------------------

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now + self._wall_offset

    def sleep(self, seconds: float) -> None:
        self.wait_until(None, max(0.0, seconds))

    def lock(self) -> SimLock:
        return SimLock(self)

    def event(self) -> SimEvent:
        return SimEvent(self)

    def start_thread(self, name: str, target: Callable[[], None]) -> SimThread:
        return self.spawn(name, target, at=self.now)

    # -- scheduling -------------------------------------------------------------------------

    def spawn(self, name: str, target: Callable[[], None], *, at: float) -> SimThread:
        """A thread that starts running at virtual time ``at``."""
        thread = SimThread(self, name, target, max(at, self.now))
        self.threads.append(thread)
        return thread

    def fork(self) -> None:
        """Continue as a forked child: only the calling (driver) thread exists there."""
        self.threads = []

    def wait_until(self, ready: Callable[[], bool] | None, timeout: float | None) -> bool:
        """Block the calling thread until ``ready()`` or ``timeout``; the final ``ready()``."""
        if ready is not None and ready():
            return True
        me = self.current
        if me is None:
            raise RuntimeError("the simulation's driver may not block; run this in a SimThread")
        me.ready = ready
        me.wake_at = math.inf if timeout is None else self.now + timeout
        self.hub.switch()
        me.ready = None
        return ready() if ready is not None else True

    def run(self, until: float) -> None:
        """Run threads until all are done or blocked past ``until`` (time stops there)."""
        threads = self.threads
        while threads:
            now = self.now
            ready: list[SimThread] = []
            earliest: SimThread | None = None
            for thread in threads:
                if thread.wake_at <= now or (thread.ready is not None and thread.ready()):
                    ready.append(thread)
                elif earliest is None or thread.wake_at < earliest.wake_at:
                    earliest = thread
            if ready:
                chosen = ready[0] if len(ready) == 1 else self.rng.choice(ready)
            else:
                assert earliest is not None
                if earliest.wake_at > until:
                    break
                if not math.isfinite(earliest.wake_at):
                    raise SimDeadlock(f"every thread is blocked forever: {threads}")
                chosen = earliest
                self.now = chosen.wake_at
            self.current = chosen
            self.switches += 1
            chosen.glet.switch()
            self.current = None
            if chosen.done:
                threads.remove(chosen)
        if math.isfinite(until) and until > self.now:
            self.now = until
