"""A manual clock for SimVault's tests: virtual time that only ``sleep`` moves."""

from __future__ import annotations

import threading


class ManualClock:
    """Virtual time: ``sleep`` moves it forward, nothing else does (tests set ``now``)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return 1_796_000_000.0 + self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)

    def lock(self) -> threading.RLock:
        return threading.RLock()

    def event(self) -> threading.Event:
        return threading.Event()
