"""SQLModel with a plugin URL: models, sessions and migrations-free table creation.

::

    export VAULT_ADDR=... VAULT_TOKEN=...
    export DATABASE_URL='postgresql+psycopg://db.internal:5432/app?plugin=vaultdb&vaultdb_role=app-rw&vaultdb_set_role=app_owner'
    python examples/recipes/sqlmodel_app.py
"""

from __future__ import annotations

import os

from sqlmodel import Field, Session, SQLModel, create_engine, select


class Hero(SQLModel, table=True):
    __tablename__ = "recipe_heroes"
    id: int | None = Field(default=None, primary_key=True)
    name: str


def make_engine(url: str | None = None):  # type: ignore[no-untyped-def]
    engine = create_engine(url or os.environ["DATABASE_URL"])
    SQLModel.metadata.create_all(engine)  # tables owned by the owner role (vaultdb_set_role)
    return engine


def add_and_count(engine, name: str) -> int:  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        session.add(Hero(name=name))
        session.commit()
        return len(session.exec(select(Hero)).all())


if __name__ == "__main__":
    print(add_and_count(make_engine(), "Deadpond"), "heroes")
