"""The cluster kit's TCP balancer: round-robin, skips refused backends, active-only mode."""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from vaultdb.testing import RoundRobinBalancer
from vaultdb.testing._ports import free_port


def backend(name: str, health: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = name.encode()
            self.send_response(health if self.path == "/v1/sys/health" else 200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def servers() -> Iterator[list[ThreadingHTTPServer]]:
    made = [backend("a", 429), backend("b", 200)]
    yield made
    for s in made:
        s.shutdown()
        s.server_close()


def get(addr: str) -> str:
    with urllib.request.urlopen(f"{addr}/x", timeout=5) as resp:
        return str(resp.read().decode())


def test_round_robin_skips_refusing_backends(servers: list[ThreadingHTTPServer]) -> None:
    dead = ("127.0.0.1", free_port())  # nothing listens: connection refused
    lb = RoundRobinBalancer([("127.0.0.1", servers[0].server_address[1]), dead,
                             ("127.0.0.1", servers[1].server_address[1])])
    lb.start()
    try:
        seen = [get(lb.addr) for _ in range(6)]
    finally:
        lb.stop()
    assert set(seen) == {"a", "b"}
    assert lb.connections[1] == 0 and lb.connections[0] + lb.connections[2] == 6


def test_active_only_goes_to_the_node_answering_200(servers: list[ThreadingHTTPServer]
                                                    ) -> None:
    lb = RoundRobinBalancer([("127.0.0.1", s.server_address[1]) for s in servers],
                            active_only=True)
    lb.start()
    try:
        assert {get(lb.addr) for _ in range(4)} == {"b"}
    finally:
        lb.stop()
