"""A small Flask app whose page shows which database user this process uses, and for how long.

Every replica (process) has its own Vault lease, so three replicas show three users; reload
after the lease rotates and the user changes without a failed request. The password is never
shown or logged.

Run it against a real Vault and database::

    VAULT_ADDR=... VAULT_TOKEN=... VAULTDB_ROLE=app \\
    DATABASE_URL=postgresql+psycopg://db.internal:5432/app flask --app app run

or against the disposable test stack, three replicas at once: ``python run_demo.py``.
"""

from __future__ import annotations

import os

from flask import Flask, jsonify, render_template_string
from sqlalchemy import text
from vaultdb.integrations.sqlalchemy import create_engine

from vaultdb import CredentialProvider

PAGE = """<!doctype html>
<html><head><title>vaultdb demo</title><meta http-equiv="refresh" content="2"></head>
<body style="font-family: sans-serif">
<h1>Replica {{ replica }} (pid {{ pid }})</h1>
<table>
<tr><th align="left">database user</th><td><code>{{ user }}</code></td></tr>
<tr><th align="left">acting as</th><td><code>{{ acting_as }}</code></td></tr>
<tr><th align="left">credential generation</th><td>{{ status.generation }}</td></tr>
<tr><th align="left">lease left</th><td>{{ "%.0f" % status.lease_seconds_left }} s</td></tr>
<tr><th align="left">rotations / renewals</th>
    <td>{{ status.rotations }} / {{ status.renewals }}</td></tr>
</table>
</body></html>
"""


def create_app(provider: CredentialProvider | None = None, database_url: str | None = None,
               replica: str | None = None) -> Flask:
    """The app factory; the provider and URL come from the environment unless given."""
    provider = provider or CredentialProvider.from_env()
    url = database_url or os.environ["DATABASE_URL"]
    engine = create_engine(url, provider=provider, pool_size=5)
    app = Flask(__name__)
    app.extensions["vaultdb"] = provider

    @app.get("/")
    def index() -> str:
        with engine.connect() as conn:
            user, acting_as = conn.execute(text("SELECT session_user, current_user")).one()
        return render_template_string(
            PAGE, user=user, acting_as=acting_as, status=provider.status(), pid=os.getpid(),
            replica=replica or os.environ.get("REPLICA", "1"))

    @app.get("/healthz")
    def healthz() -> tuple[object, int]:
        status = provider.status()
        body = {"healthy": status.healthy, "user": status.username,
                "generation": status.generation, "lease_seconds_left": status.lease_seconds_left}
        return jsonify(body), 200 if status.healthy else 503

    return app
