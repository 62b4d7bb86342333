"""Helpers for the recipe tests: plugin URLs, serving across rotations, uvicorn servers."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from vaultdb import CredentialProvider
from vaultdb.testing import VaultDBStack, revoked_usernames, wait_for

ROOT = Path(__file__).resolve().parents[2]
ROTATIONS = 2


@dataclass
class Recipe:
    stack: VaultDBStack
    role: str
    env: dict[str, str]
    _before: set[str] = field(default_factory=set)

    def url(self, driver: str, **params: str) -> str:
        """A plugin URL for this test's role: no user, no password."""
        pg = self.stack.postgres
        query = "&".join([f"plugin=vaultdb&vaultdb_role={self.role}",
                          *(f"vaultdb_{k}={v}" for k, v in params.items())])
        return f"{driver}://{pg.host}:{pg.port}/{pg.database}?{query}"

    def shared_provider(self) -> CredentialProvider:
        """The one provider the recipe's engines made in this process."""
        from vaultdb import _registry

        made = [p for k, p in _registry._providers.items() if k not in self._before]
        assert len(made) == 1, made
        return made[0]


def serve_across_rotations(request: Callable[[], str], provider: CredentialProvider,
                           rotations: int = ROTATIONS, timeout: float = 60) -> set[str]:
    """Call ``request`` (which raises on any failure) until ``rotations`` leases were revoked.

    Returns the database users seen; a failed request fails the test at once.
    """
    revoked = revoked_usernames(provider)
    users = {request()}

    def rotated_enough() -> bool:
        users.add(request())
        return len(revoked) >= rotations

    wait_for(rotated_enough, timeout=timeout, interval=0.02)
    assert len(users) >= rotations + 1, users
    return users


@dataclass
class Server:
    process: subprocess.Popen[str]
    base: str

    def get(self, path: str) -> Any:
        # A new connection per request, so requests spread over uvicorn's workers.
        response = httpx.get(self.base + path, timeout=10, headers={"Connection": "close"})
        assert response.status_code == 200, response.text
        return response.json()

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        out, _ = self.process.communicate(timeout=30)
        return out
