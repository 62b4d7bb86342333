"""The example Django project (examples/django_app) run by real servers against the real stack.

Every server is a subprocess in its own session on a free 127.0.0.1 port, killed (process
group) in teardown whatever happened. Each test has its own Vault roles, so a test's
dynamic users are exactly ``database_users_of_role(stack, role)``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from vaultdb.testing import VaultDBStack, wait_for
from vaultdb.testing._ports import free_port

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "django_app"
BIN = Path(sys.executable).parent


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def get(self, query: str = "", timeout: float = 10) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.port}/?format=json{query}"
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            assert resp.status == 200
            data: dict[str, Any] = json.loads(resp.read())
            return data

    def wait_ready(self, timeout: float = 30) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}:\n{self.output()}")
            try:
                self.get(timeout=2)
            except OSError:
                return False
            return True

        wait_for(ready, timeout=timeout, interval=0.1)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class Example:
    stack: VaultDBStack
    role: str
    env: dict[str, str]
    tmp: Path
    servers: list[Server] = field(default_factory=list)

    def manage(self, *args: str, timeout: float = 120, **env: str
               ) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "manage.py", *args], cwd=EXAMPLE,
                              env={**self.env, **env}, capture_output=True, text=True,
                              timeout=timeout)

    def serve(self, argv: Sequence[str], **env: str) -> Server:
        port = free_port()
        log = self.tmp / f"server-{len(self.servers)}.log"
        cmd = [a.replace("{port}", str(port)) for a in argv]
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, cwd=EXAMPLE, env={**self.env, **env}, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        server = Server(proc, port, log)
        self.servers.append(server)
        server.wait_ready()
        return server

    def gunicorn(self, *extra: str, workers: int = 3, **env: str) -> Server:
        return self.serve([str(BIN / "gunicorn"), "-c", "gunicorn.conf.py",
                           "-b", "127.0.0.1:{port}", "-w", str(workers), *extra], **env)


@pytest.fixture
def example(vaultdb_stack: VaultDBStack, vaultdb_role_name: str, tmp_path: Path,
            request: pytest.FixtureRequest) -> Iterator[Example]:
    marker = request.node.get_closest_marker("ttl")
    default_ttl, max_ttl = marker.args if marker else (6, 18)
    role = vaultdb_role_name
    vaultdb_stack.create_database_role(role, default_ttl=default_ttl, max_ttl=max_ttl)
    vaultdb_stack.create_kubernetes_role(role)
    token = vaultdb_stack.write_service_account_token(tmp_path / "sa" / "token")
    env = vaultdb_stack.env(
        VAULTDB_ROLE=role, VAULTDB_AUTH_ROLE=role, VAULTDB_TOKEN_PATH=str(token),
        VAULTDB_DRAIN_SECONDS="1", VAULTDB_REVOKE_TIMEOUT="5",
        DJANGO_SETTINGS_MODULE="exampleproj.settings", PYTHONUNBUFFERED="1",
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    ex = Example(vaultdb_stack, role, env, tmp_path)
    migrated = ex.manage("migrate", "--noinput")
    assert migrated.returncode == 0, migrated.stderr
    yield ex
    for server in ex.servers:
        if server.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.proc.pid, signal.SIGKILL)
            server.proc.wait(10)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "ttl(default, max): TTLs of the test's Vault role")
