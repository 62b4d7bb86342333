"""Kit for the cluster failover tests: a provider + SQLAlchemy engine + query threads on the
3-node cluster, and what every scenario checks at the end.

Failures are counted only while the provider's current credentials were valid (``status()``
says healthy when the query began): a query that fails after the lease ran out is the
expected result of a Vault outage longer than the lease, not a vaultdb failure.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import sqlalchemy
from sqlalchemy import exc, text

from vaultdb import CredentialProvider
from vaultdb.events import LeaseError, LeaseEvent, LeaseRenewed, LeaseRevoked, LeaseRotated
from vaultdb.testing import VaultDBStack, database_users_of_role, wait_for

logger = logging.getLogger("tests.cluster")


@dataclass(frozen=True)
class Failure:
    started: float
    error: str
    creds_valid: bool


@dataclass
class QueryLoad:
    """``SELECT 1`` on ``threads`` threads through one engine (one retry on a dropped
    connection, as SQLAlchemy recommends), counting failures."""

    engine: sqlalchemy.Engine
    provider: CredentialProvider
    threads: int = 3
    ok: int = 0
    failures: list[Failure] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> QueryLoad:
        for i in range(self.threads):
            t = threading.Thread(target=self._run, name=f"cluster-load-{i}", daemon=True)
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
                    continue
                raise

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            valid = self.provider.status().healthy
            try:
                self._query()
            except Exception as error:
                with self._lock:
                    self.failures.append(Failure(started, f"{type(error).__name__}: {error}"
                                                 [:300], valid))
                self._stop.wait(0.05)
            else:
                with self._lock:
                    self.ok += 1
            self._stop.wait(0.01)

    def progressed(self, n: int = 20, timeout: float = 30.0) -> None:
        target = self.ok + n
        wait_for(lambda: self.ok >= target, timeout=timeout)

    def failed_while_valid(self) -> list[Failure]:
        return [f for f in self.failures if f.creds_valid]

    def stop(self) -> None:
        self._stop.set()
        for t in self._workers:
            t.join(15)
        assert not any(t.is_alive() for t in self._workers), "a query thread hung"


@dataclass
class Events:
    """Every event of one provider with the monotonic time it arrived."""

    seen: list[tuple[float, LeaseEvent]] = field(default_factory=list)

    def __call__(self, event: LeaseEvent) -> None:
        self.seen.append((time.monotonic(), event))

    def after(self, moment: float, *types: type[LeaseEvent]) -> list[LeaseEvent]:
        return [e for t, e in self.seen if t >= moment and isinstance(e, types)]

    def renewed_after(self, moment: float) -> bool:
        """A renewal (or a rotation, a fresh credentials read) succeeded after *moment*."""
        return bool(self.after(moment, LeaseRenewed, LeaseRotated))

    def errors(self) -> list[str]:
        return [f"{e.operation}: {type(e.error).__name__}: {e.error} (retry={e.will_retry})"
                for _, e in self.seen if isinstance(e, LeaseError)]


@dataclass
class ClusterScenario:
    stack: VaultDBStack
    role: str
    provider: CredentialProvider
    engine: sqlalchemy.Engine
    load: QueryLoad
    events: Events
    finished: bool = False

    def users(self) -> set[str]:
        return database_users_of_role(self.stack, self.role)

    def wait_renewal_after(self, moment: float, timeout: float = 40.0) -> None:
        try:
            wait_for(lambda: self.events.renewed_after(moment), timeout=timeout)
        except AssertionError:
            raise AssertionError(f"no renewal or rotation after the fault; lease errors: "
                                 f"{self.events.errors()}") from None

    def finish(self) -> None:
        """Stop the load; close the provider (revocation at close); check nothing leaked."""
        self.cleanup()
        revoked = {e.credentials.username for _, e in self.events.seen
                   if isinstance(e, LeaseRevoked)}
        print(f"\n[cluster load] {self.load.ok} queries ok, {len(self.load.failures)} failed "
              f"({len(self.load.failed_while_valid())} while credentials were valid); "
              f"lease errors: {self.events.errors()}")
        assert self.load.failed_while_valid() == [], self.load.failed_while_valid()
        current = self.provider_username
        assert current in revoked, f"the lease of {current!r} was not revoked at close"
        wait_for(lambda: not self.users(), timeout=20)

    provider_username: str = ""

    def cleanup(self) -> None:
        if self.finished:
            return
        self.finished = True
        self.provider_username = self.provider.status().username or ""
        self.load.stop()
        self.engine.dispose()
        self.provider.close()
