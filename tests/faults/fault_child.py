"""A child "pod" for the process-fault tests: provider + engine + queries, then wait for death.

Run as ``python fault_child.py``; configured by ``VAULT_ADDR``, ``ROLE``, ``SA_TOKEN`` and the
``PG*`` variables. vaultdb's own SIGTERM handler is left in place (the process is a plain
``python app.py``). Prints one line per event on stdout, flushed:
``ready <user> <seconds left>``, ``rotated <old> <new>``, ``fail <error>``, ``ok <count>``.
Logs (INFO, ``vaultdb``) go to stderr.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time

from sqlalchemy import text
from vaultdb.integrations.sqlalchemy import create_engine

from vaultdb import CredentialProvider, KubernetesAuth, LeaseRotated


def say(*parts: object) -> None:
    print(*parts, flush=True)


def main() -> None:
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format="%(name)s %(levelname)s %(message)s")
    logging.getLogger("vaultdb").setLevel(logging.INFO)
    role = os.environ["ROLE"]
    provider = CredentialProvider(role, auth=KubernetesAuth(role=role,
                                                            token_path=os.environ["SA_TOKEN"]),
                                  drain_seconds=1.0, request_timeout=5.0)
    provider.subscribe(lambda e: say("rotated", e.previous.username, e.credentials.username),
                       LeaseRotated)
    host, port, db = os.environ["PGHOST"], os.environ["PGPORT"], os.environ["PGDATABASE"]
    engine = create_engine(f"postgresql+psycopg://{host}:{port}/{db}", provider=provider,
                           pool_size=2, pool_pre_ping=True)
    creds = provider.credentials()  # on the main thread: installs the SIGTERM handler
    ok = 0

    def query_loop() -> None:
        nonlocal ok
        while True:
            try:
                with engine.connect() as conn:
                    conn.execute(text("SELECT 1")).scalar_one()
                ok += 1
            except Exception as error:
                say("fail", f"{type(error).__name__}: {error}".replace("\n", " ")[:200])
                time.sleep(0.05)
            time.sleep(0.01)

    for _ in range(2):
        threading.Thread(target=query_loop, daemon=True).start()
    say("ready", creds.username, f"{creds.seconds_left():.3f}")
    while True:
        time.sleep(0.25)
        say("ok", ok)


if __name__ == "__main__":
    main()
