"""VaultDBLifespan: gives lifespan-less apps a shutdown, chains apps that have their own."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from vaultdb.integrations.asgi import VaultDBLifespan

from vaultdb import CredentialProvider, KubernetesAuth, ProviderState
from vaultdb.testing import database_users_of_role


@pytest.fixture
def provider(vaultdb_stack, vaultdb_role_name, tmp_path):
    vaultdb_stack.create_database_role(vaultdb_role_name, default_ttl=6, max_ttl=18)
    vaultdb_stack.create_kubernetes_role(vaultdb_role_name)
    token = vaultdb_stack.write_service_account_token(tmp_path / "token")
    p = CredentialProvider(vaultdb_role_name, vault_addr=vaultdb_stack.vault_addr,
                           auth=KubernetesAuth(role=vaultdb_role_name, token_path=str(token)),
                           drain_seconds=1, handle_sigterm=False)
    yield p
    p.close()


async def run_lifespan(app: Any, log: list[str]) -> list[str]:
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    sent: list[str] = []

    async def receive() -> dict[str, Any]:
        return await inbox.get()

    async def send(message: dict[str, Any]) -> None:
        sent.append(message["type"])
        log.append("server:" + message["type"])

    task = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}},
                                   receive, send))
    await inbox.put({"type": "lifespan.startup"})
    await inbox.put({"type": "lifespan.shutdown"})
    await asyncio.wait_for(task, 20)
    return sent


def test_lifespan_less_app_gets_a_shutdown_that_revokes(provider, vaultdb_stack,
                                                        vaultdb_role_name):
    async def django_like(scope: Any, receive: Any, send: Any) -> None:
        raise ValueError("Django can only handle ASGI/HTTP connections, not lifespan.")

    user = provider.credentials().username
    sent = asyncio.run(run_lifespan(VaultDBLifespan(django_like), []))
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert provider.state is ProviderState.CLOSED
    assert user not in database_users_of_role(vaultdb_stack, vaultdb_role_name)


def test_app_with_its_own_lifespan_shuts_down_first(provider, vaultdb_stack):
    log: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "lifespan.startup"
        await send({"type": "lifespan.startup.complete"})
        assert (await receive())["type"] == "lifespan.shutdown"
        # The app's own shutdown may still use the database: credentials are still valid.
        log.append(f"app-shutdown:{provider.state.value}")
        await send({"type": "lifespan.shutdown.complete"})

    provider.credentials()
    asyncio.run(run_lifespan(VaultDBLifespan(app), log))
    assert log == ["server:lifespan.startup.complete", "app-shutdown:running",
                   "server:lifespan.shutdown.complete"]
    assert provider.state is ProviderState.CLOSED


def test_http_scopes_go_straight_to_the_app():
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    asyncio.run(VaultDBLifespan(app)({"type": "http"}, None, None))  # type: ignore[arg-type]
    assert seen == ["http"]
