"""Each recipe under examples/recipes and examples/alembic, started against the real stack:
zero failed requests across two rotations, and the leases revoked when the app stops."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from recipekit import ROOT, ROTATIONS, Recipe, Server

from vaultdb.testing import database_users_of_role, wait_for

pytestmark = pytest.mark.slow
RECIPES = ROOT / "examples" / "recipes"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"vaultdb_recipe_{name}", RECIPES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def users_left(recipe: Recipe) -> set[str]:
    return database_users_of_role(recipe.stack, recipe.role)


def test_fastapi_asyncpg_with_several_uvicorn_workers(
        recipe: Recipe, serve: Callable[..., Server]) -> None:
    pg = recipe.stack.postgres
    env = {**recipe.env, "DATABASE_URL": f"postgresql://{pg.host}:{pg.port}/{pg.database}"}
    server = serve("examples.recipes.fastapi_asyncpg:app", env, "--workers", "2")
    users_by_pid: dict[int, set[str]] = defaultdict(set)

    def each_worker_rotated_twice() -> bool:
        answer = server.get("/whoami")  # asserts 200: a failed request fails the test
        users_by_pid[answer["pid"]].add(answer["user"])
        return len(users_by_pid) == 2 and all(
            len(users) >= ROTATIONS + 1 for users in users_by_pid.values())

    wait_for(each_worker_rotated_twice, timeout=90, interval=0.01)
    first = [min(users) for users in users_by_pid.values()]
    assert first[0] != first[1]  # one database user per worker
    server.stop()
    wait_for(lambda: not users_left(recipe), timeout=20)  # revoked by each lifespan shutdown


def test_fastapi_sqlalchemy_asyncio_through_the_url_plugin(
        recipe: Recipe, serve: Callable[..., Server]) -> None:
    env = {**recipe.env, "DATABASE_URL": recipe.url("postgresql+asyncpg")}
    server = serve("examples.recipes.fastapi_sqlalchemy:app", env)
    users: set[str] = set()

    def rotated_twice() -> bool:
        users.add(server.get("/whoami")["user"])
        return len(users) >= ROTATIONS + 1

    wait_for(rotated_twice, timeout=60, interval=0.01)
    server.stop()
    wait_for(lambda: not users_left(recipe), timeout=20)  # revoked at exit


def test_flask_sqlalchemy_configured_by_its_uri_alone(
        recipe: Recipe, monkeypatch: pytest.MonkeyPatch) -> None:
    from recipekit import serve_across_rotations

    monkeypatch.setenv("SQLALCHEMY_DATABASE_URI", recipe.url("postgresql+psycopg"))
    client = load("flask_sqlalchemy_app").create_app().test_client()

    def request() -> str:
        response = client.get("/whoami")
        assert response.status_code == 200, response.text
        return str(response.get_json()["user"])

    request()
    serve_across_rotations(request, recipe.shared_provider())


def test_sqlmodel(recipe: Recipe) -> None:
    from recipekit import serve_across_rotations
    from sqlmodel import text

    example = load("sqlmodel_app")
    engine = example.make_engine(recipe.url("postgresql+psycopg", set_role="app_owner"))
    try:
        def request() -> str:
            assert example.add_and_count(engine, "Deadpond") >= 1
            with engine.connect() as conn:
                return str(conn.execute(text("SELECT session_user")).scalar_one())

        serve_across_rotations(request, recipe.shared_provider())
        owner = recipe.stack.sql("SELECT tableowner FROM pg_tables "
                                 "WHERE tablename = 'recipe_heroes'")
        assert owner == [(recipe.stack.postgres.owner_role,)]
    finally:
        example.SQLModel.metadata.drop_all(engine)
        engine.dispose()


def test_pandas_read_sql_with_a_plugin_url(recipe: Recipe) -> None:
    from recipekit import serve_across_rotations

    report = load("pandas_read_sql").report
    url = recipe.url("postgresql+psycopg")

    def request() -> str:
        frame = report(url)
        assert len(frame) == 1
        return str(frame["db_user"][0])

    request()
    serve_across_rotations(request, recipe.shared_provider())


def test_alembic_driven_by_its_ini_file_alone(recipe: Recipe, tmp_path: Path) -> None:
    pg = recipe.stack.postgres
    source = (ROOT / "examples" / "alembic" / "alembic-url.ini").read_text()
    url = recipe.url("postgresql+psycopg", set_role=pg.owner_role)
    line = next(x for x in source.splitlines() if x.startswith("sqlalchemy.url ="))
    ini = ROOT / "examples" / "alembic" / f".test-{recipe.role}.ini"  # %(here)s must resolve
    ini.write_text(source.replace(line, f"sqlalchemy.url = {url}"))
    try:
        def alembic(*args: str) -> str:
            done = subprocess.run([sys.executable, "-m", "alembic", "-c", str(ini), *args],
                                  env=recipe.env, capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr
            return done.stderr

        log = alembic("upgrade", "head")
        assert "Running upgrade 0001 -> 0002" in log
        owners = recipe.stack.sql("SELECT tablename, tableowner FROM pg_tables "
                                  "WHERE tablename IN ('notes', 'alembic_version')")
        assert sorted(owners) == [("alembic_version", pg.owner_role), ("notes", pg.owner_role)]
        assert not users_left(recipe)  # revoked when alembic exited: it owned nothing
        alembic("downgrade", "base")
        assert recipe.stack.sql("SELECT to_regclass('notes') IS NULL") == [(True,)]
        assert not users_left(recipe)
    finally:
        ini.unlink()
        recipe.stack.sql("DROP TABLE IF EXISTS alembic_version")
