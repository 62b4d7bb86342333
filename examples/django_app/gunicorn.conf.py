"""gunicorn settings for the example: vaultdb's hooks revoke after gunicorn's graceful drain."""

import os

from vaultdb.integrations.gunicorn import on_exit, post_fork, worker_exit  # noqa: F401

wsgi_app = "exampleproj.wsgi:application"
workers = int(os.environ.get("GUNICORN_WORKERS", "3"))
graceful_timeout = 15
