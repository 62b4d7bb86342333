"""Small helpers for tests written against the stack."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from vaultdb.provider import CredentialProvider

    from ._stack import VaultDBStack

__all__ = ["assert_retired_users_gone", "database_users_of_role", "revoked_usernames", "wait_for"]

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 30.0, interval: float = 0.05) -> T:
    """Poll until ``predicate()`` is truthy and return it; ``AssertionError`` after ``timeout``.

    Tests wait for conditions, never for fixed times: machines are noisy.
    """
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def database_users_of_role(stack: VaultDBStack, role: str) -> set[str]:
    """Users Vault created for database role ``role`` that still exist in PostgreSQL.

    Vault's default PostgreSQL username template keeps the first 8 characters of the role
    name: ``v-<auth display name>-<role[:8]>-<random>-<timestamp>``.
    """
    return {r for r in stack.dynamic_db_roles() if f"-{role[:8]}-" in r}


def revoked_usernames(provider: CredentialProvider) -> set[str]:
    """A set that fills with the usernames whose lease ``provider`` revokes from now on."""
    from vaultdb.events import LeaseRevoked

    users: set[str] = set()
    provider.subscribe(lambda e: users.add(e.credentials.username), LeaseRevoked)
    return users


def assert_retired_users_gone(stack: VaultDBStack, provider: CredentialProvider, role: str,
                              seen: set[str], *, at_least: int = 1,
                              timeout: float = 15.0) -> None:
    """Every user in ``seen`` but the current one is dropped and has no session left.

    ``at_least`` is how many retired users ``seen`` must hold (rotations that happened).
    """
    retired = seen - {provider.credentials().username}
    assert len(retired) >= at_least, f"only {len(retired)} retired users, wanted {at_least}"
    wait_for(lambda: not (database_users_of_role(stack, role) & retired), timeout=timeout)
    assert not set(stack.session_users()) & retired
