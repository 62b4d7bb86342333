"""``VAULT["prefetch"]``: credentials are fetched while Django starts, before any query."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from vaultdb.testing import VaultDBStack
from vaultdb.testing import database_users_of_role as roles_of

CHILD = textwrap.dedent("""
    import json, os, sys, time
    import django
    from django.conf import settings
    settings.configure(
        DATABASES={"default": {
            "ENGINE": "vaultdb.integrations.django.postgresql",
            "HOST": os.environ["PGHOST"], "PORT": os.environ["PGPORT"],
            "NAME": os.environ["PGDATABASE"],
            "VAULT": {"role": os.environ["ROLE"], "prefetch": True, "handle_sigterm": False,
                      "auth": {"method": "kubernetes", "role": os.environ["ROLE"],
                               "token_path": os.environ["SA_TOKEN"]}},
        }},
        INSTALLED_APPS=["vaultdb.integrations.django"],
    )
    django.setup()
    from django.db import connections
    from vaultdb.integrations.django import provider_for
    provider = provider_for("default")
    deadline = time.monotonic() + 30
    while provider.generation is None and time.monotonic() < deadline:
        time.sleep(0.01)
    # No query has run: the credentials came from the background fetch started in ready().
    fetched_before_any_query = provider.generation is not None and \\
        connections["default"].connection is None
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT session_user")
        user = cursor.fetchone()[0]
    print(json.dumps({"fetched_before_any_query": fetched_before_any_query, "user": user,
                      "logins": provider.status().logins}), flush=True)
    connections.close_all()
    provider.close()
""")


def test_prefetch_fetches_during_setup_and_the_first_query_uses_it(
        vaultdb_stack: VaultDBStack, vaultdb_role_name: str, tmp_path: Path) -> None:
    role = vaultdb_role_name
    vaultdb_stack.create_database_role(role, default_ttl=30, max_ttl=60)
    vaultdb_stack.create_kubernetes_role(role)
    token = vaultdb_stack.write_service_account_token(tmp_path / "token")
    pg = vaultdb_stack.postgres
    env = vaultdb_stack.env(ROLE=role, SA_TOKEN=str(token), PGHOST=pg.host,
                            PGPORT=str(pg.port), PGDATABASE=pg.database)
    done = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["fetched_before_any_query"] is True
    assert result["logins"] == 1
    assert result["user"].startswith("v-")
    assert roles_of(vaultdb_stack, role) == set()  # revoked at close
