"""Fixtures for the command-line tests: an app role on the real stack (see ``clitools``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from clitools import SECRETS_TABLE, App

from vaultdb.testing import FaultProxy, VaultDBStack, default_creation_statements


@pytest.fixture
def make_app(vaultdb_stack: VaultDBStack, vaultdb_role_name: str, tmp_path: Path
             ) -> Callable[..., App]:
    stack = vaultdb_stack
    stack.sql(f"CREATE TABLE IF NOT EXISTS {SECRETS_TABLE} (name text, password text)")
    pg = stack.postgres

    def make(*, default_ttl: int | str = 30, max_ttl: int | str = 120, token_ttl: int = 60,
             token_max_ttl: int = 0, policies: Sequence[str] | None = None,
             auth_role: str | None = None) -> App:
        role = vaultdb_role_name
        creation = [*default_creation_statements(pg.database, pg.owner_role),
                    f"INSERT INTO {SECRETS_TABLE} VALUES ('{{{{name}}}}', '{{{{password}}}}');"]
        stack.create_database_role(role, default_ttl=default_ttl, max_ttl=max_ttl,
                                   creation_statements=creation)
        kwargs = {} if policies is None else {"policies": tuple(policies)}
        stack.create_kubernetes_role(auth_role or role, token_ttl=token_ttl,
                                     token_max_ttl=token_max_ttl, **kwargs)  # type: ignore[arg-type]
        token = stack.write_service_account_token(tmp_path / "sa" / "token")
        return App(stack, role, token)

    return make


@pytest.fixture
def app(make_app: Callable[..., App]) -> App:
    return make_app()




@pytest.fixture
def proxy(vaultdb_stack: VaultDBStack) -> Iterator[FaultProxy]:
    """A fault-injecting proxy in front of the stack's OpenBao (point VAULT_ADDR at it)."""
    with FaultProxy(vaultdb_stack.vault_addr, upstream_timeout=10) as p:
        yield p
