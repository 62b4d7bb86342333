"""Small helpers for tests written against the stack."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from ._stack import VaultDBStack

__all__ = ["database_users_of_role", "wait_for"]

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
