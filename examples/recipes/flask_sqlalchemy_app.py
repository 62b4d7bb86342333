"""Flask-SQLAlchemy configured only through ``SQLALCHEMY_DATABASE_URI``.

::

    export VAULT_ADDR=... VAULT_TOKEN=...
    export SQLALCHEMY_DATABASE_URI='postgresql+psycopg://db.internal:5432/app?plugin=vaultdb&vaultdb_role=app-rw'
    flask --app examples.recipes.flask_sqlalchemy_app run
"""

from __future__ import annotations

import os

from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import text

db = SQLAlchemy()


def create_app() -> Flask:
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["SQLALCHEMY_DATABASE_URI"]
    db.init_app(app)

    @app.get("/whoami")
    def whoami() -> dict[str, object]:
        user = db.session.execute(text("SELECT session_user")).scalar_one()
        return {"user": user, "pid": os.getpid()}

    return app
