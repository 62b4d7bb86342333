"""Run a slice of SQLAlchemy's own test suite through the vaultdb dialect, and with a static
password, on the same server; report the tests that fail only through vaultdb.

Not part of CI (minutes to hours). Usage::

    pip download --no-binary :all: --no-deps sqlalchemy==2.1.9 -d /tmp/sa   # your version
    tar xzf /tmp/sa/sqlalchemy-*.tar.gz -C /tmp/sa
    python benchmarks/peer_sqlalchemy_suite.py /tmp/sa/sqlalchemy-2.1.9 test/engine test/sql

It starts the test stack (OpenBao + PostgreSQL on 127.0.0.1; the suite needs contrib
extensions such as citext, which pgserver lacks: set ``VAULTDB_PG_BIN`` to a system
PostgreSQL's bin directory), creates the schemas SQLAlchemy's suite expects (owned by the
owner role), the extensions it uses, a static user set up like Vault's dynamic users (member
of the owner role, ``SET role`` at login) and a Vault role with 60 s / 240 s leases, so leases
rotate during the vaultdb run. Then it runs ``pytest <paths> --dburi <url>`` twice, with
``postgresql+psycopg://static:...`` and with
``postgresql+vaultdb_psycopg://...?vaultdb_role=sa``, and compares the JUnit reports. A
failing test may print its connect arguments into them: they hold credentials of this run's
own throwaway stack, revoked when it stops.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import sqlalchemy

from vaultdb.testing import VaultDBStack


def outcomes(report: Path) -> dict[str, str]:
    result: dict[str, str] = {}
    for case in ET.parse(report).iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        tags = {child.tag for child in case}
        result[name] = ("failed" if tags & {"failure", "error"} else
                        "skipped" if "skipped" in tags else "passed")
    return result


def run(sdist: Path, paths: list[str], dburi: str, report: Path, env: dict[str, str],
        extra: list[str]) -> None:
    cmd = [sys.executable, "-m", "pytest", *paths, "--dburi", dburi, "-p", "no:cacheprovider",
           "-p", "no:xdist", "-q", "--junitxml", str(report), "-o", "addopts=", *extra]
    shown = sqlalchemy.make_url(dburi).render_as_string(hide_password=True)
    print("$", " ".join(cmd).replace(dburi, f"'{shown}'"), flush=True)
    with open(report.with_suffix(".log"), "w") as log:
        subprocess.run(cmd, cwd=sdist, env=env, check=False, stdout=log,
                       stderr=subprocess.STDOUT)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sdist", type=Path, help="unpacked SQLAlchemy sdist (with test/)")
    parser.add_argument("paths", nargs="+", help="test paths inside it, e.g. test/engine")
    parser.add_argument("--driver", default="psycopg", help="psycopg, psycopg2 or asyncpg")
    parser.add_argument("--out", type=Path, default=Path("build/peer-sqlalchemy"))
    args, extra = parser.parse_known_args()  # the rest goes to pytest (e.g. -k, -x)
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    with VaultDBStack.start() as stack:
        pg = stack.postgres
        owner = pg.owner_role
        password = secrets.token_urlsafe(16)
        stack.sql(f"CREATE ROLE sa_static LOGIN PASSWORD '{password}' IN ROLE \"{owner}\"")
        stack.sql(f"ALTER ROLE sa_static SET role = '{owner}'")
        stack.sql(f'GRANT CONNECT, CREATE, TEMPORARY ON DATABASE "{pg.database}" TO "{owner}"')
        stack.sql(f'GRANT CONNECT ON DATABASE "{pg.database}" TO sa_static')
        for schema in ("test_schema", "test_schema_2"):
            stack.sql(f'CREATE SCHEMA IF NOT EXISTS {schema} AUTHORIZATION "{owner}"')
        for extension in ("hstore", "btree_gist", "citext"):  # else those tests skip
            try:
                stack.sql(f"CREATE EXTENSION IF NOT EXISTS {extension}")
            except Exception as exc:
                print(f"no {extension} extension ({exc}); the tests that need it skip")
        stack.create_database_role("sa", default_ttl=60, max_ttl=240)
        env = {**os.environ, "VAULT_ADDR": stack.vault_addr,
               "VAULT_TOKEN": stack.create_token(ttl="24h"),
               "VAULTDB_HANDLE_SIGTERM": "false", "VAULTDB_DRAIN_SECONDS": "10"}
        where = f"{pg.host}:{pg.port}/{pg.database}"
        static = f"postgresql+{args.driver}://sa_static:{password}@{where}"
        vaultdb = f"postgresql+vaultdb_{args.driver}://{where}?vaultdb_role=sa"
        run(args.sdist, args.paths, static, args.out / "static.xml", env, extra)
        run(args.sdist, args.paths, vaultdb, args.out / "vaultdb.xml", env, extra)
    base, mine = outcomes(args.out / "static.xml"), outcomes(args.out / "vaultdb.xml")
    for name, results in (("static password", base), ("vaultdb dialect", mine)):
        counts = {k: sum(1 for v in results.values() if v == k)
                  for k in ("passed", "failed", "skipped")}
        print(f"{name}: {len(results)} tests, {counts}")
    regressions = sorted(t for t, v in base.items() if v == "passed" and mine.get(t) != "passed")
    print(f"pass with a static password, not through vaultdb: {len(regressions)}")
    for test in regressions:
        print("  ", test, mine.get(test, "missing"))
    return 1 if regressions else 0


if __name__ == "__main__":
    raise SystemExit(main())
