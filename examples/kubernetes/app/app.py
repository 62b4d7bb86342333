"""A tiny web app for the Kubernetes example: vaultdb in process, no sidecar, no preStop hook.

Standard library HTTP server plus psycopg; configured only by environment variables, exactly
as the Deployment in ``examples/kubernetes/base`` sets them.

Routes:

* ``/healthz`` (liveness): the process serves HTTP and vaultdb's renewer is alive. It does not
  look at Vault: a Vault outage must not make Kubernetes restart every pod (the credentials
  held keep working until their deadline, and a restarted pod could not get new ones anyway).
* ``/readyz`` (readiness): 200 only while valid credentials are held (``status().healthy``);
  the first probes also trigger the first fetch when start-up could not reach Vault.
* ``/``: connects with the current credentials, records a visit and shows ``session_user``
  and the credential generation (never the password).
* ``/metrics``: Prometheus metrics when ``APP_METRICS=true`` (needs ``prometheus-client``).

``python app.py migrate`` creates the table; the migration Job runs it under
``vaultdb exec``, which puts ``PGUSER``/``PGPASSWORD`` in its environment.

Shutdown: on SIGTERM the app keeps serving for ``APP_SHUTDOWN_DELAY`` seconds (endpoints take a
moment to drop the pod), stops accepting requests, waits for those in flight, then closes the
provider, which revokes the lease (bounded by ``VAULTDB_REVOKE_TIMEOUT``). All of it fits in
``terminationGracePeriodSeconds``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any

import psycopg

from vaultdb import CredentialProvider, VaultDBError

logger = logging.getLogger("app")

TABLE = "visits"


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


def connect(provider: CredentialProvider) -> psycopg.Connection[Any]:
    """A connection with the current credentials; host, port and database from PG* vars."""
    creds = provider.credentials()
    return psycopg.connect(user=creds.username, password=creds.password, connect_timeout=5,
                           autocommit=True)


def renewer_alive(provider: CredentialProvider) -> bool:
    """Liveness: once the provider runs, its renewer thread must exist."""
    if provider.status().state != "running":
        return True
    name = f"vaultdb-{provider.role}-renewer"
    return any(t.name == name and t.is_alive() for t in threading.enumerate())


class Handler(BaseHTTPRequestHandler):
    server: AppServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)

    def send(self, code: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, code: int, data: dict[str, Any]) -> None:
        self.send(code, json.dumps(data).encode() + b"\n")

    def do_GET(self) -> None:
        provider = self.server.provider
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            alive = renewer_alive(provider)
            self.send_json(200 if alive else 500, {"alive": alive})
        elif path == "/readyz":
            self.readyz(provider)
        elif path == "/metrics" and self.server.metrics:
            from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

            self.send(200, generate_latest(), CONTENT_TYPE_LATEST)
        elif path == "/":
            self.index(provider)
        else:
            self.send_json(404, {"error": "not found"})

    def readyz(self, provider: CredentialProvider) -> None:
        status = provider.status()
        if not status.healthy and not self.server.stopping.is_set():
            try:  # first fetch, or the held credentials ran out: try briefly
                provider.credentials(timeout=2.0)
                status = provider.status()
            except VaultDBError as exc:
                logger.warning("not ready: %s", exc)
        ready = status.healthy and not self.server.stopping.is_set()
        self.send_json(200 if ready else 503, {
            "ready": ready, "generation": status.generation,
            "lease_seconds_left": status.lease_seconds_left, "last_error": status.last_error})

    def index(self, provider: CredentialProvider) -> None:
        try:
            with connect(provider) as conn:
                conn.execute(f"INSERT INTO {TABLE} (username) VALUES (session_user)")
                row = conn.execute(
                    f"SELECT session_user, current_user, (SELECT count(*) FROM {TABLE})").fetchone()
        except (VaultDBError, psycopg.Error) as exc:
            logger.warning("request failed: %s", exc)
            self.send_json(503, {"error": type(exc).__name__})
            return
        assert row is not None
        self.send_json(200, {"session_user": row[0], "current_user": row[1], "visits": row[2],
                             "generation": provider.generation})


class AppServer(ThreadingHTTPServer):
    daemon_threads = False  # server_close() waits for requests in flight
    block_on_close = True

    def __init__(self, address: tuple[str, int], provider: CredentialProvider,
                 metrics: bool) -> None:
        super().__init__(address, Handler)
        self.provider = provider
        self.metrics = metrics
        self.stopping = threading.Event()


def migrate() -> int:
    """Create the schema with PGUSER/PGPASSWORD from ``vaultdb exec``."""
    with psycopg.connect(connect_timeout=10, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (id bigserial PRIMARY KEY, "
                     "username text NOT NULL, at timestamptz NOT NULL DEFAULT now())")
        row = conn.execute("SELECT session_user").fetchone()
    logger.info("migrated as %s", row[0] if row else "?")
    return 0


def serve() -> int:
    port = int(os.environ.get("PORT", "8080"))
    delay = env_float("APP_SHUTDOWN_DELAY", 5.0)
    metrics = os.environ.get("APP_METRICS", "").lower() in {"1", "true", "yes", "on"}
    provider = CredentialProvider.from_env()
    if metrics:
        from vaultdb.integrations.prometheus import instrument

        instrument(provider)
    server = AppServer(("0.0.0.0", port), provider, metrics)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        if server.stopping.is_set():
            return
        logger.info("SIGTERM: draining for %.1fs, then stopping", delay)
        server.stopping.set()  # readiness fails from now on
        threading.Timer(delay, server.shutdown).start()

    # Our own handler: vaultdb then leaves SIGTERM alone and we close the provider ourselves.
    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        provider.start()
    except VaultDBError as exc:  # not ready yet; /readyz keeps trying
        logger.warning("no credentials at start-up: %s", exc)
    logger.info("listening on :%d", port)
    try:
        server.serve_forever()
    finally:
        server.server_close()  # waits for requests in flight
        provider.close()  # revokes the lease: the database user is gone
    logger.info("stopped")
    return 0


def main(argv: list[str]) -> int:
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if argv[1:2] == ["migrate"]:
        return migrate()
    return serve()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
