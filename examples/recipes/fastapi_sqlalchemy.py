"""FastAPI (or plain Starlette) with SQLAlchemy asyncio, configured by one URL.

No vaultdb code at all: the URL names the plugin, the rest comes from the environment::

    export VAULT_ADDR=... VAULT_TOKEN=...   # or VAULTDB_AUTH_METHOD=kubernetes ...
    export DATABASE_URL='postgresql+asyncpg://db.internal:5432/app?plugin=vaultdb&vaultdb_role=app-rw'
    uvicorn examples.recipes.fastapi_sqlalchemy:app

Engines built from the same settings share one provider; its lease is revoked at exit.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

engine = create_async_engine(os.environ["DATABASE_URL"], pool_size=5)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    await engine.dispose()


app = FastAPI(lifespan=lifespan)


@app.get("/whoami")
async def whoami() -> dict[str, object]:
    async with engine.connect() as conn:
        user = (await conn.execute(text("SELECT session_user"))).scalar_one()
    return {"user": user, "pid": os.getpid()}
