"""Start the test stack and three replicas of the app, then print what each page shows.

``python examples/flask_app/run_demo.py [--seconds N]``: replicas listen on 127.0.0.1 ports
8101-8103 (open them in a browser while it runs). Leases last 30 s with a 60 s max TTL, so
within a minute every replica rotates to a new user without a failed request.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from vaultdb.testing import VaultDBStack

HERE = Path(__file__).resolve().parent


def fetch(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as resp:
        return str(resp.read().decode())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=90.0)
    args = parser.parse_args()
    with VaultDBStack.start() as stack:
        stack.create_database_role("demo", default_ttl=30, max_ttl=60)
        pg = stack.postgres
        procs = []
        for i, port in enumerate((8101, 8102, 8103), start=1):
            env = stack.env(VAULT_TOKEN=stack.create_token(ttl=3600), VAULTDB_ROLE="demo",
                            VAULTDB_DRAIN_SECONDS="5", REPLICA=str(i),
                            DATABASE_URL=f"postgresql+psycopg://{pg.host}:{pg.port}/{pg.database}")
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "flask", "--app", "app", "run", "--port", str(port)],
                cwd=HERE, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        try:
            end = time.monotonic() + args.seconds
            time.sleep(2)
            while time.monotonic() < end:
                for port in (8101, 8102, 8103):
                    try:
                        page = fetch(port)
                    except OSError as exc:
                        print(f"{port}: {exc}")
                        continue
                    user = re.search(r"database user</th><td><code>([^<]+)", page)
                    left = re.search(r"lease left</th><td>([^<]+)", page)
                    print(f"{port}: user={user.group(1) if user else '?'} "
                          f"left={left.group(1) if left else '?'}")
                print()
                time.sleep(5)
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(10)


if __name__ == "__main__":
    main()
