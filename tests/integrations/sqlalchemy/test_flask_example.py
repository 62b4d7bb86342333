"""examples/flask_app: three replicas show three distinct users, then rotate without errors."""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from vaultdb import CredentialProvider
from vaultdb.testing import wait_for

APP = Path(__file__).resolve().parents[3] / "examples" / "flask_app" / "app.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("vaultdb_flask_example", APP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def shown_user(page: str) -> str:
    match = re.search(r"database user</th><td><code>([^<]+)</code>", page)
    assert match, page
    return match.group(1)


def test_three_replicas_show_three_users_and_survive_rotation(
        make_provider: Callable[..., CredentialProvider], pg_url: Callable[[str], str]) -> None:
    example = load_example()
    providers = [make_provider() for _ in range(3)]
    clients = [example.create_app(p, pg_url("postgresql+psycopg"), replica=str(i)).test_client()
               for i, p in enumerate(providers, start=1)]
    pages = [c.get("/").get_data(as_text=True) for c in clients]
    users = [shown_user(page) for page in pages]
    assert len(set(users)) == 3
    for page, provider in zip(pages, providers, strict=True):
        assert provider.credentials().password not in page
        assert re.search(r"lease left</th><td>\d+ s", page)
        assert "acting as</th><td><code>app_owner" in page

    def rotated() -> bool:
        responses = [c.get("/") for c in clients]
        assert all(r.status_code == 200 for r in responses)
        return all(shown_user(r.get_data(as_text=True)) != u
                   for r, u in zip(responses, users, strict=True))

    wait_for(rotated, timeout=20, interval=0.2)
    health = clients[0].get("/healthz").get_json()
    assert health["healthy"] is True and health["user"] != users[0]
