"""ASGI lifespan helper: revoke at server shutdown, after the server's graceful drain.

``app = VaultDBLifespan(get_asgi_application())``

The ASGI lifespan ``shutdown`` event is the one exit path uvicorn runs in every mode (with
SIGTERM it drains, then re-raises the signal, and ``atexit`` never runs). Django's ASGI handler
has no lifespan support, so this middleware answers ``lifespan.startup``/``lifespan.shutdown``
itself and calls :func:`vaultdb.close_all` (in a thread, bounded by ``revoke_timeout``) before
acknowledging the shutdown. An app with its own lifespan (Starlette, FastAPI, Django apps
wrapped by a lifespan framework) keeps it: events are forwarded, and vaultdb closes after the
app finished its own shutdown, just before ``lifespan.shutdown.complete`` is sent. Other scopes
go straight to the app.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from vaultdb import close_all

__all__ = ["VaultDBLifespan"]

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class VaultDBLifespan:
    """Wrap an ASGI app so leases are revoked at lifespan shutdown.

    :param forward: ``None`` (default) forwards lifespan to the app and takes over if the app
        refuses it before reading any message (as Django's handler does); ``False`` never
        forwards; ``True`` always forwards.
    :param timeout: revocation budget passed to :func:`vaultdb.close_all`.
    """

    def __init__(self, app: ASGIApp, *, forward: bool | None = None,
                 timeout: float | None = None) -> None:
        self.app = app
        self.forward = forward
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        if self.forward is not False and await self._forwarded(scope, receive, send):
            return
        await self._lifespan(receive, send)

    async def close(self) -> None:
        """Revoke every provider of this process without blocking the event loop."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, functools.partial(close_all, self.timeout))

    async def _forwarded(self, scope: Scope, receive: Receive, send: Send) -> bool:
        received = False

        async def receive_(  # the app's view of receive
        ) -> Message:
            nonlocal received
            received = True
            return await receive()

        async def send_(message: Message) -> None:
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                await self.close()
            await send(message)

        try:
            await self.app(scope, receive_, send_)
        except Exception:
            if received or self.forward:
                raise
            logger.debug("vaultdb: the ASGI app has no lifespan support; handling it")
            return False
        return received

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await self.close()
                except Exception as exc:  # close_all logs and swallows; belt and braces
                    await send({"type": "lifespan.shutdown.failed", "message": str(exc)})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                return
