"""One "pod" of ``vaultdb demo``: an ordinary app using vaultdb and SQLAlchemy.

Run by the demo as ``python -m vaultdb.cli._demo_pod`` with the environment an app would have
on Kubernetes (``VAULT_ADDR``, ``VAULTDB_ROLE``, ``VAULTDB_AUTH_METHOD=kubernetes``,
``VAULTDB_TOKEN_PATH`` pointing at its own service-account token). It queries the database
continuously and reports to the demo on stdout, one JSON object per line: ``event`` lines for
every provider event and ``stats`` lines a few times a second. It never prints a password.

SIGTERM is handled the way a server does it: stop taking work, close the pool, close the
provider (which revokes), report, exit 0. If the demo goes away (stdin closes), same.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from .. import events as ev
from ..errors import VaultDBError
from ..provider import CredentialProvider

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

logger = logging.getLogger("vaultdb.cli.demo.pod")

STATS_EVERY = 0.25


def make_engine(url: str, provider: CredentialProvider) -> Engine:
    """The demo's only coupling of SQLAlchemy to vaultdb.

    ``vaultdb.integrations.sqlalchemy`` when it is installed; otherwise plain SQLAlchemy as its
    docs recommend for dynamic credentials ("Generating dynamic authentication tokens": a
    ``do_connect`` listener), plus a ``checkout`` listener that retires connections opened with
    rotated-out credentials.
    """
    kwargs: dict[str, Any] = {"pool_size": 2, "max_overflow": 0, "pool_pre_ping": True}
    try:
        # Imported by name: ``vaultdb.integrations`` is mapped from the top-level
        # ``integrations/`` directory, which type checkers of ``vaultdb`` alone do not see.
        integration = importlib.import_module("vaultdb.integrations.sqlalchemy")
    except ImportError:
        pass
    else:
        engine: Engine = integration.create_engine(url, provider=provider, **kwargs)
        return engine
    import sqlalchemy
    from sqlalchemy.exc import DisconnectionError

    engine = sqlalchemy.create_engine(url, **kwargs)

    @sqlalchemy.event.listens_for(engine, "do_connect")
    def _connect(dialect: Any, conn_rec: Any, cargs: Any, cparams: dict[str, Any]) -> None:
        creds = provider.credentials()
        cparams["user"], cparams["password"] = creds.username, creds.password
        conn_rec.info["_vaultdb_generation"] = creds.generation

    @sqlalchemy.event.listens_for(engine, "checkout")
    def _checkout(dbapi_conn: Any, conn_rec: Any, proxy: Any) -> None:
        if not provider.is_current(conn_rec.info.get("_vaultdb_generation")):
            raise DisconnectionError("opened with rotated-out credentials")

    return engine


class Reporter:
    """Writes JSON lines to stdout from any thread."""

    def __init__(self, pod: str) -> None:
        self.pod = pod
        self._lock = threading.Lock()
        self.issued = 0

    def send(self, message_type: str, /, **fields: Any) -> None:
        line = json.dumps({"type": message_type, "pod": self.pod, "t": time.time(), **fields})
        with self._lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def on_event(self, event: ev.LeaseEvent) -> None:
        """Provider listener: one line per transition (never the password)."""
        if isinstance(event, ev.LeaseRotated):
            self.issued += 1
            self.send("event", kind="rotated", user=event.credentials.username,
                      previous=event.previous.username, generation=event.credentials.generation,
                      ttl=event.credentials.lease_duration, reason=event.reason)
        elif isinstance(event, ev.LeaseCreated):
            self.issued += 1
            self.send("event", kind="created", user=event.credentials.username,
                      generation=event.credentials.generation,
                      ttl=event.credentials.lease_duration)
        elif isinstance(event, ev.LeaseRenewed):
            self.send("event", kind="renewed", user=event.credentials.username,
                      ttl=event.credentials.lease_duration)
        elif isinstance(event, ev.LeaseRevoked):
            self.send("event", kind="revoked", user=event.credentials.username)
        elif isinstance(event, ev.LeaseExpired):
            self.send("event", kind="expired", user=event.credentials.username)
        elif isinstance(event, ev.LeaseError):
            self.send("event", kind="error", message=str(event.error),
                      will_retry=event.will_retry)
        elif isinstance(event, ev.LoginCreated):
            self.send("event", kind="login", method=event.method)
        elif isinstance(event, ev.LoginRenewed):
            self.send("event", kind="login-renewed", ttl=event.ttl)


def _watch_parent(stop: threading.Event) -> None:
    """The demo keeps our stdin open; EOF means it is gone, so shut down."""
    try:
        while os.read(0, 1024):  # the raw fd: a buffered reader would block interpreter exit
            pass
    except OSError:
        pass
    stop.set()


def main() -> int:
    pod = os.environ.get("VAULTDB_DEMO_POD", "pod")
    url = os.environ["VAULTDB_DEMO_DB_URL"]
    interval = float(os.environ.get("VAULTDB_DEMO_INTERVAL", "0.1"))
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"%(asctime)s {pod} %(name)s %(levelname)s %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the demo decides when pods stop
    threading.Thread(target=_watch_parent, args=(stop,), name="parent-watch",
                     daemon=True).start()
    out = Reporter(pod)
    try:
        provider = CredentialProvider.from_env(handle_sigterm=False)
    except VaultDBError as exc:
        out.send("fatal", message=exc.message, hint=exc.hint)
        return 1
    provider.subscribe(out.on_event)
    from sqlalchemy import text

    engine = make_engine(url, provider)
    queries = failed = 0
    session_user: str | None = None
    who = text("SELECT SUBSTRING_INDEX(USER(), '@', 1)" if url.startswith("mysql")
               else "SELECT session_user")
    last_error: str | None = None

    def stats(state: str) -> None:
        s = provider.status()
        out.send("stats", state=state, user=s.username, session_user=session_user,
                 generation=s.generation, lease_left=s.lease_seconds_left,
                 token_left=s.token_seconds_left, renewals=s.renewals, rotations=s.rotations,
                 revocations=s.revocations, issued=out.issued, errors=s.errors,
                 queries=queries, failed=failed, last_error=last_error)

    try:
        provider.start()
    except VaultDBError as exc:
        out.send("fatal", message=exc.message, hint=exc.hint)
        provider.close()
        return 1
    next_stats = 0.0
    while not stop.is_set():
        try:
            with engine.connect() as conn:
                session_user = str(conn.execute(who).scalar_one())
            queries += 1
        except Exception as exc:  # counted and shown; the pod keeps serving
            failed += 1
            last_error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            logger.warning("query failed: %s", last_error)
        now = time.monotonic()
        if now >= next_stats:
            stats("running")
            next_stats = now + STATS_EVERY
        stop.wait(interval)
    stats("stopping")
    engine.dispose()
    provider.close()
    stats("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
