"""Free TCP port helper for the test stack.

Servers that cannot bind port 0 themselves (OpenBao dev mode, PostgreSQL) need a port
number up front. The kernel picks one for us; a tiny race remains between closing the probe
socket and the server binding it, so callers retry startup on "address in use".
"""

from __future__ import annotations

import socket

__all__ = ["free_port", "port_is_open"]


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on *host* that was free a moment ago.

    Binding to port 0 lets the kernel choose from the ephemeral range, which keeps parallel
    test processes (pytest-xdist workers) from colliding the way a fixed port would.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_open(host: str, port: int, timeout: float = 0.2) -> bool:
    """Whether something accepts TCP connections on *host*:*port* (used for readiness polls)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
