"""A TCP load-balancer stand-in: what a Kubernetes Service in front of every Vault pod does.

Each new client connection goes to the next backend in round-robin order; a backend that
refuses the connection (a killed node) is skipped, as kube-proxy stops routing to a pod that is
gone. Bytes are relayed as they are (no HTTP parsing), so keep-alive connections stay on the
node they reached, exactly as through a real Service. A frozen node (SIGSTOP) still accepts
connections in the kernel and is *not* skipped: a Service without a readiness probe failure
does the same. :meth:`RoundRobinBalancer.exclude` takes a backend out by hand, like a failed
readiness probe.

With ``active_only=True`` it is the *active-only* Service instead (the Vault Helm chart's
``vault-active``): each new connection goes to the backend whose ``GET /v1/sys/health``
answers 200, i.e. the current leader, checked per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
from collections import Counter
from collections.abc import Sequence

from ._ports import free_port

__all__ = ["RoundRobinBalancer"]

logger = logging.getLogger(__name__)

_CONNECT_TIMEOUT = 1.0
_CHUNK = 65536


class RoundRobinBalancer:
    """Listen on 127.0.0.1 and spread connections over *backends* (``(host, port)`` pairs)."""

    def __init__(self, backends: Sequence[tuple[str, int]], *, port: int | None = None,
                 active_only: bool = False) -> None:
        self.backends = list(backends)
        self.active_only = active_only
        self.port = port or free_port()
        self._next = itertools.cycle(range(len(self.backends)))
        self._excluded: set[int] = set()
        #: Connections relayed per backend index (for tests and benchmarks).
        self.connections: Counter[int] = Counter()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RoundRobinBalancer(addr={self.addr!r}, backends={len(self.backends)})"

    @property
    def addr(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def exclude(self, index: int) -> None:
        """Stop routing new connections to backend *index* (a failed readiness probe)."""
        with self._lock:
            self._excluded.add(index)

    def include(self, index: int) -> None:
        with self._lock:
            self._excluded.discard(index)

    def start(self) -> None:
        """Start relaying on a daemon thread; returns once the port is listening."""
        if self._thread is not None:
            return
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._handle, "127.0.0.1", self.port))
            except BaseException as exc:
                errors.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="vaultdb-test-balancer", daemon=True)
        self._thread.start()
        ready.wait()
        if errors:
            self._thread = None
            raise errors[0]

    def stop(self) -> None:
        """Close the listener and every relayed connection. Idempotent."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.sleep(0)

        with contextlib.suppress(RuntimeError):
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout=5)
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        self._loop = self._thread = self._server = None

    def _order(self) -> list[int]:
        with self._lock:
            first = next(self._next)
            n = len(self.backends)
            return [i for i in ((first + k) % n for k in range(n)) if i not in self._excluded]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # type: ignore[arg-type]
        try:
            for index in self._order():
                host, port = self.backends[index]
                if self.active_only and not await _is_active(host, port):
                    continue
                try:
                    up_reader, up_writer = await asyncio.wait_for(
                        asyncio.open_connection(host, port), _CONNECT_TIMEOUT)
                except (OSError, asyncio.TimeoutError):
                    continue
                self.connections[index] += 1
                await self._relay(reader, writer, up_reader, up_writer)
                return
            logger.debug("no backend accepted the connection")
        finally:
            self._tasks.discard(task)  # type: ignore[arg-type]
            writer.close()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     up_reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter) -> None:
        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(_CHUNK):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                # Either side gone: close both, so a crashed node resets its clients.
                for w in (dst, writer, up_writer):
                    with contextlib.suppress(Exception):
                        w.close()

        try:
            await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        finally:
            up_writer.close()


async def _is_active(host: str, port: int) -> bool:
    """``GET /v1/sys/health`` answers 200 (the active node), within a second."""
    async def probe() -> bool:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(f"GET /v1/sys/health HTTP/1.1\r\nHost: {host}:{port}\r\n"
                         "Connection: close\r\n\r\n".encode())
            await writer.drain()
            status = await reader.readline()
            return status.split(b" ")[1:2] == [b"200"]
        finally:
            writer.close()

    try:
        return await asyncio.wait_for(probe(), _CONNECT_TIMEOUT)
    except (OSError, asyncio.TimeoutError, IndexError):
        return False
