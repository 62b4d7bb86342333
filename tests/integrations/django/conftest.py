"""Django configured once per test process, with one database alias per test.

Each test gets its own Vault database role and kubernetes auth role (``vaultdb_role_name``)
and a fresh ``DATABASES`` alias pointing at the real stack, so tests never share credentials.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import django
import pytest
from django.conf import settings

from vaultdb.testing import VaultDBStack

ENGINE = "vaultdb.integrations.django.postgresql"

@pytest.fixture(scope="session")
def django_configured(vaultdb_stack: VaultDBStack, tmp_path_factory: pytest.TempPathFactory
                      ) -> VaultDBStack:
    if not settings.configured:
        token = vaultdb_stack.write_service_account_token(
            tmp_path_factory.mktemp("django-sa") / "token")
        vaultdb_stack.create_database_role("django-default", default_ttl=6, max_ttl=18)
        vaultdb_stack.create_kubernetes_role("django-default")
        pg = vaultdb_stack.postgres
        settings.configure(
            DATABASES={"default": {
                "ENGINE": ENGINE, "HOST": pg.host, "PORT": str(pg.port), "NAME": pg.database,
                "VAULT": {"role": "django-default", "vault_addr": vaultdb_stack.vault_addr,
                          "auth": {"method": "kubernetes", "role": "django-default",
                                   "token_path": str(token)},
                          "handle_sigterm": False},
            }},
            INSTALLED_APPS=["vaultdb.integrations.django"],
            USE_TZ=True,
        )
        django.setup()
    return vaultdb_stack


@pytest.fixture
def token_file(tmp_path: Path, vaultdb_stack: VaultDBStack) -> Path:
    return vaultdb_stack.write_service_account_token(tmp_path / "sa" / "token")


@pytest.fixture
def make_alias(django_configured: VaultDBStack, vaultdb_role_name: str, token_file: Path
               ) -> Iterator[Callable[..., str]]:
    """Create Vault roles and a DATABASES alias; returns the alias name."""
    from django.db import connections
    from vaultdb.integrations.django.registry import get_provider

    stack = django_configured
    made: list[str] = []
    created: set[str] = set()

    def make(*, default_ttl: int = 3, max_ttl: int = 9, creation: list[str] | None = None,
             revocation: list[str] | None = None, options: dict[str, Any] | None = None,
             vault: dict[str, Any] | None = None, role: str | None = None, **entry: Any) -> str:
        name = role or vaultdb_role_name
        if name not in created:
            created.add(name)
            stack.create_database_role(name, default_ttl=default_ttl, max_ttl=max_ttl,
                                       creation_statements=creation,
                                       revocation_statements=revocation)
            stack.create_kubernetes_role(name)
        alias = f"{name}-{len(made)}"
        pg = stack.postgres
        config = {
            "ENGINE": ENGINE, "HOST": pg.host, "PORT": str(pg.port), "NAME": pg.database,
            "OPTIONS": options or {},
            "VAULT": {"role": name, "vault_addr": stack.vault_addr,
                      "auth": {"method": "kubernetes", "role": name,
                               "token_path": str(token_file)},
                      "drain_seconds": 1, "handle_sigterm": False, **(vault or {})},
            **entry,
        }
        connections.settings[alias] = connections.configure_settings(
            {"default": dict(config), alias: config})[alias]
        made.append(alias)
        return alias

    yield make
    for alias in made:
        conn = connections[alias]
        conn.close()
        if conn.settings_dict["OPTIONS"].get("pool"):
            conn.close_pool()
        get_provider(conn.settings_dict).close()
        del connections[alias]
        del connections.settings[alias]
