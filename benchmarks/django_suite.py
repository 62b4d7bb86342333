"""Run Django's own test suite through a vaultdb ENGINE and through a static password.

Not part of CI (it takes minutes). Django's sdist ships ``tests/runtests.py``; this script
starts the real test stack (OpenBao + PostgreSQL, and MariaDB for ``--db mysql``), creates a
Vault role whose users may create the test databases, writes one settings module per variant
and runs the chosen labels with each, then prints the summary line of each run::

    pip download django==$(python -c 'import django; print(django.__version__)') \\
        --no-binary :all: --no-deps -d /tmp/dj && tar xzf /tmp/dj/django-*.tar.gz -C /tmp/dj
    python benchmarks/django_suite.py /tmp/dj/django-5.2.19 backends transactions migrations

Variants: ``static`` (Django's own ENGINE, a user with a fixed password and the same grants:
the baseline), ``vaultdb`` (vaultdb's ENGINE, dynamic users), and for PostgreSQL
``vaultdb-pool`` (the same with ``OPTIONS["pool"]``). A failure present in a vaultdb variant
but not in the baseline is the adapter's.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vaultdb.testing import VaultDBStack

SETTINGS = """\
SECRET_KEY = "django_tests_secret_key"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
USE_TZ = False
_entry = {entry!r}
# "other" needs its own NAME (its test database is test_<NAME>), as in Django's own settings.
DATABASES = {{"default": dict(_entry), "other": {{**_entry, "NAME": _entry["NAME"] + "_other"}}}}
"""


def pg_entries(stack: VaultDBStack) -> dict[str, dict[str, object]]:
    pg = stack.postgres
    stack.sql('CREATE ROLE "suite_owner" NOLOGIN CREATEDB')
    stack.sql("CREATE ROLE \"suite_static\" LOGIN PASSWORD 'suite-static' IN ROLE suite_owner")
    stack.sql("ALTER ROLE \"suite_static\" SET role = 'suite_owner'")
    stack.create_database_role("suite", default_ttl=3600, max_ttl=7200, creation_statements=[
        "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' "
        "VALID UNTIL '{{expiration}}' IN ROLE \"suite_owner\";",
        "ALTER ROLE \"{{name}}\" SET role = 'suite_owner';",
    ])
    base = {"HOST": pg.host, "PORT": str(pg.port), "NAME": pg.database}
    vault = {"role": "suite", "vault_addr": stack.vault_addr, "handle_sigterm": False,
             "auth": {"method": "token"}}  # VAULT_TOKEN from the environment
    engine = "vaultdb.integrations.django.postgresql"
    return {
        "static": {**base, "ENGINE": "django.db.backends.postgresql", "USER": "suite_static",
                   "PASSWORD": "suite-static"},
        "vaultdb": {**base, "ENGINE": engine, "VAULT": vault},
        "vaultdb-pool": {**base, "ENGINE": engine, "VAULT": vault,
                         "OPTIONS": {"pool": {"min_size": 1, "max_size": 4}}},
    }


def mysql_entries(stack: VaultDBStack) -> dict[str, dict[str, object]]:
    from vaultdb.testing import MySQLTarget

    target = MySQLTarget.start(stack)
    server = target.server
    # Django's test databases are test_<NAME> and test_<NAME>_other: grant on test_%.
    grants = [r"GRANT ALL PRIVILEGES ON `test\_%`.* TO '{{name}}'@'%'",
              f"GRANT ALL PRIVILEGES ON `{server.database}`.* TO '{{{{name}}}}'@'%'"]
    target.create_role("suite", default_ttl=3600, max_ttl=7200, creation_statements=[
        "CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'", *grants])
    server.sql("CREATE USER 'suite_static'@'%' IDENTIFIED BY 'suite-static'")
    for grant in grants:
        server.sql(grant.replace("{{name}}", "suite_static"))
    base = {"HOST": server.host, "PORT": str(server.port), "NAME": server.database}
    return {
        "static": {**base, "ENGINE": "django.db.backends.mysql", "USER": "suite_static",
                   "PASSWORD": "suite-static"},
        "vaultdb": {**base, "ENGINE": "vaultdb.integrations.django.mysql",
                    "VAULT": {"role": "suite", "mount": target.mount,
                              "vault_addr": stack.vault_addr, "handle_sigterm": False,
                              "auth": {"method": "token"}}},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("django_src", type=Path, help="unpacked Django sdist (has tests/)")
    parser.add_argument("labels", nargs="+")
    parser.add_argument("--db", choices=("postgresql", "mysql"), default="postgresql")
    parser.add_argument("--variants", default="", help="comma-separated subset")
    args = parser.parse_args()
    tests = args.django_src.resolve() / "tests"
    with tempfile.TemporaryDirectory(prefix="vaultdb-django-suite-") as tmp, \
            VaultDBStack.start(workdir=Path(tmp) / "stack") as stack:
        entries = (pg_entries if args.db == "postgresql" else mysql_entries)(stack)
        # The token reaches runtests.py through its environment, never a file.
        token = stack.create_token(policies=("vaultdb-app", "vaultdb-app-mysql"), ttl="8h")
        wanted = [v for v in args.variants.split(",") if v] or list(entries)
        for name in wanted:
            module = f"suite_{args.db}_{name.replace('-', '_')}"
            (Path(tmp) / f"{module}.py").write_text(SETTINGS.format(entry=entries[name]))
            began = time.monotonic()
            done = subprocess.run(
                [sys.executable, str(tests / "runtests.py"), f"--settings={module}",
                 "--parallel=1", "--noinput", *args.labels],
                cwd=tests, env={"PYTHONPATH": tmp, "PATH": "/usr/bin:/bin", "VAULT_TOKEN": token},
                capture_output=True, text=True)
            out = done.stdout + done.stderr
            (Path(tmp).parent / f"{module}.log").write_text(out)
            ran = re.findall(r"^Ran \d+ tests.*$", out, re.M)
            result = re.findall(r"^(OK.*|FAILED \(.*\))$", out, re.M)
            failed = re.findall(r"^(?:FAIL|ERROR): (.*)$", out, re.M)
            print(f"{args.db} {name}: {ran[-1] if ran else '?'}; "
                  f"{result[-1] if result else 'no result'} in {time.monotonic() - began:.0f} s")
            for line in failed:
                print(f"    {line}")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
