"""Scenario kit for the fault tests: continuous queries, a scenario's parts, log lookups.

The load uses the pool the way SQLAlchemy recommends for disconnects: ``pool_pre_ping`` and one
retry of a statement whose connection was invalidated (a backend killed under it). Waits are
on conditions, never on fixed times.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy import exc, text

from vaultdb import CredentialProvider
from vaultdb.testing import VaultDBStack, database_users_of_role, wait_for


@dataclass(frozen=True)
class Failure:
    started: float  #: time.monotonic() when the query (with its retry) began
    failed: float
    error: str


@dataclass
class QueryLoad:
    """``SELECT 1`` in a loop on ``threads`` threads through one engine; counts failures."""

    engine: sqlalchemy.Engine
    threads: int = 3
    ok: int = 0
    retried: int = 0
    failures: list[Failure] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> QueryLoad:
        for i in range(self.threads):
            t = threading.Thread(target=self._run, name=f"fault-load-{i}", daemon=True)
            t.start()
            self._workers.append(t)
        self.progressed(10)
        return self

    def _query(self) -> None:
        for attempt in (1, 2):
            try:
                with self.engine.connect() as conn:
                    assert conn.execute(text("SELECT 1")).scalar_one() == 1
                return
            except exc.DBAPIError as error:
                if attempt == 1 and error.connection_invalidated:
                    with self._lock:
                        self.retried += 1
                    continue
                raise

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self._query()
            except Exception as error:
                with self._lock:
                    self.failures.append(Failure(started, time.monotonic(),
                                                 f"{type(error).__name__}: {error}"[:300]))
                self._stop.wait(0.05)
            else:
                with self._lock:
                    self.ok += 1
            self._stop.wait(0.01)

    def progressed(self, n: int = 20, timeout: float = 20.0) -> None:
        """Wait until ``n`` more queries succeeded (the load is really running)."""
        target = self.ok + n
        wait_for(lambda: self.ok >= target, timeout=timeout)

    def failures_started_before(self, moment: float) -> list[Failure]:
        return [f for f in self.failures if f.started < moment]

    def failures_started_after(self, moment: float) -> list[Failure]:
        return [f for f in self.failures if f.started >= moment]

    def stop(self) -> None:
        self._stop.set()
        for t in self._workers:
            t.join(15)
        assert not any(t.is_alive() for t in self._workers), "a query thread hung"


@dataclass
class Scenario:
    stack: VaultDBStack
    role: str
    token_path: Path
    provider: CredentialProvider
    engine: sqlalchemy.Engine
    load: QueryLoad
    finished: bool = False

    def finish(self, *, leak_timeout: float = 10.0, allowed: frozenset[str] = frozenset()
               ) -> None:
        """Stop everything, then assert that no database user of this role is left."""
        self.cleanup()
        print(f"\n[fault load] {self.load.ok} queries ok, {self.load.retried} retried on a new "
              f"connection, {len(self.load.failures)} failed")
        wait_for(lambda: database_users_of_role(self.stack, self.role) <= allowed,
                 timeout=leak_timeout)
        assert database_users_of_role(self.stack, self.role) <= allowed

    def cleanup(self) -> None:
        if self.finished:
            return
        self.finished = True
        self.load.stop()
        self.engine.dispose()
        self.provider.close()


def logged(caplog: pytest.LogCaptureFixture, *needles: str, level: int = logging.DEBUG
           ) -> list[str]:
    """Messages from the ``vaultdb`` loggers at ``level`` or above containing every needle."""
    return [r.getMessage() for r in caplog.records
            if r.name.startswith("vaultdb") and r.levelno >= level
            and all(n in r.getMessage() for n in needles)]
