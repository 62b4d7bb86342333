"""FastAPI + asyncpg, no SQLAlchemy: a pool whose connections log in as a Vault user.

Run with several workers; each worker process gets its own database user::

    export VAULT_ADDR=... VAULT_TOKEN=... VAULTDB_ROLE=app-rw   # or Kubernetes auth
    export DATABASE_URL=postgresql://db.internal:5432/app       # no user, no password
    uvicorn examples.recipes.fastapi_asyncpg:app --workers 4

The lifespan starts the provider without waiting (login and the first lease happen while the
pool is built), and revokes the worker's lease at shutdown.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from vaultdb.integrations.asyncpg import create_pool

from vaultdb import CredentialProvider


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    provider = CredentialProvider.from_env()
    provider.start(wait=False)
    try:
        async with create_pool(os.environ["DATABASE_URL"], provider=provider,
                               min_size=1, max_size=5) as pool:
            app.state.pool = pool
            yield
    finally:
        await asyncio.to_thread(provider.close)  # revoke this worker's lease


app = FastAPI(lifespan=lifespan)


@app.get("/whoami")
async def whoami(request: Request) -> dict[str, object]:
    async with request.app.state.pool.acquire() as conn:
        user = await conn.fetchval("SELECT session_user")
    return {"user": user, "pid": os.getpid()}
