"""uvicorn (ASGI lifespan helper) and runserver: leases revoked at a graceful stop."""

from __future__ import annotations

import signal
import sys

import pytest

from vaultdb.testing import database_users_of_role, wait_for


def test_uvicorn_lifespan_shutdown_revokes_after_sigterm(example):
    server = example.serve([sys.executable, "-m", "uvicorn", "exampleproj.asgi:application",
                            "--host", "127.0.0.1", "--port", "{port}", "--lifespan", "on"])
    data = server.get()
    assert data["session_user"] in database_users_of_role(example.stack, example.role)
    assert data["current_user"] == "app_owner"
    server.stop(signal.SIGTERM)  # uvicorn drains, runs lifespan shutdown, re-raises SIGTERM
    assert database_users_of_role(example.stack, example.role) == set(), server.output()
    assert "Application shutdown complete" in server.output()


def test_uvicorn_multiple_workers_each_revoke(example):
    server = example.serve([sys.executable, "-m", "uvicorn", "exampleproj.asgi:application",
                            "--host", "127.0.0.1", "--port", "{port}", "--workers", "2"])
    server.get()
    wait_for(lambda: database_users_of_role(example.stack, example.role), timeout=10)
    server.stop(signal.SIGTERM)
    assert database_users_of_role(example.stack, example.role) == set(), server.output()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_runserver_revokes_at_stop(example, sig):
    server = example.serve([sys.executable, "manage.py", "runserver", "--noreload",
                            "127.0.0.1:{port}"])
    data = server.get()
    assert data["session_user"] in database_users_of_role(example.stack, example.role)
    server.stop(sig)
    assert database_users_of_role(example.stack, example.role) == set(), server.output()
