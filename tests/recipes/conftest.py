"""The recipes under examples/ against the real stack: one database role per test, 4 s / 6 s
leases (a rotation about every 4.5 s), the environment a deployment would set."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator

import httpx
import pytest
from recipekit import ROOT, Recipe, Server

from vaultdb.testing import VaultDBStack, wait_for


@pytest.fixture
def recipe(vaultdb_stack: VaultDBStack, vaultdb_role_name: str,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[Recipe]:
    from vaultdb import _registry

    vaultdb_stack.create_database_role(vaultdb_role_name, default_ttl=4, max_ttl=6)
    settings = {"VAULT_TOKEN": vaultdb_stack.create_token(ttl=600),
                "VAULTDB_ROLE": vaultdb_role_name, "VAULTDB_DRAIN_SECONDS": "1"}
    env = vaultdb_stack.env(**settings)
    for name in ("VAULT_ADDR", *settings):  # for recipes that run in this process
        monkeypatch.setenv(name, env[name])
    monkeypatch.setenv("VAULTDB_HANDLE_SIGTERM", "false")
    made = Recipe(vaultdb_stack, vaultdb_role_name, env, set(_registry._providers))
    yield made
    for key in set(_registry._providers) - made._before:
        _registry._providers.pop(key).close()


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    """Start ``uvicorn <app> <args>`` from the repository root; stopped at teardown."""
    from vaultdb.testing._ports import free_port

    started: list[Server] = []

    def start(app: str, env: dict[str, str], *args: str) -> Server:
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
             "--log-level", "warning", *args],
            cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True)
        server = Server(process, f"http://127.0.0.1:{port}")
        started.append(server)

        def up() -> bool:
            assert process.poll() is None, process.communicate()[0]
            try:
                return httpx.get(server.base + "/whoami", timeout=5).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(up, timeout=60, interval=0.1)
        return server

    yield start
    for server in started:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()

