"""Helpers for running the ``vaultdb`` command line as a subprocess against the real stack."""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vaultdb.testing import VaultDBStack

CLI = [sys.executable, "-m", "vaultdb.cli"]

#: Creation statements also record each issued password in a table only the superuser reads,
#: so tests can assert that no output ever contains one.
SECRETS_TABLE = "vaultdb_cli_issued"


def run_cli(args: Sequence[str], env: dict[str, str], timeout: float = 90,
            **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True,
                          timeout=timeout, **kwargs)  # type: ignore[call-overload, no-any-return]


class Background:
    """A CLI process whose output lines can be waited for (stdout and stderr merged)."""

    def __init__(self, args: Sequence[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen([*CLI, *args], env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def _drain(self, timeout: float) -> bool:
        try:
            line = self._queue.get(timeout=timeout)
        except queue.Empty:
            return True
        if line is None:
            return False
        self.lines.append(line)
        return True

    def wait_for(self, pattern: str, timeout: float = 60, count: int = 1) -> list[re.Match[str]]:
        """Wait until ``count`` output lines match ``pattern``; return the matches."""
        end = time.monotonic() + timeout
        regex = re.compile(pattern)
        while True:
            matches = [m for m in map(regex.search, self.lines) if m]
            if len(matches) >= count:
                return matches
            left = end - time.monotonic()
            if left < 0 or not self._drain(min(0.2, left)):
                raise AssertionError(f"no {count} line(s) matching {pattern!r} within {timeout}s; "
                                     "output:\n" + "\n".join(self.lines))

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def finish(self, timeout: float = 60) -> int:
        code = self.proc.wait(timeout=timeout)
        while self._drain(0.5):
            pass
        return code

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)


@dataclass
class App:
    """A database role + Kubernetes auth role + the pod's token file, and its environment."""

    stack: VaultDBStack
    role: str
    token_path: Path

    def env(self, **extra: str) -> dict[str, str]:
        env = self.stack.env(
            VAULTDB_ROLE=self.role, VAULTDB_AUTH_METHOD="kubernetes", VAULTDB_AUTH_ROLE=self.role,
            VAULTDB_TOKEN_PATH=str(self.token_path), VAULTDB_DRAIN_SECONDS="1",
            PYTHONUNBUFFERED="1")
        env.update(extra)
        return env

    @property
    def dsn(self) -> str:
        pg = self.stack.postgres
        return f"postgresql://{pg.host}:{pg.port}/{pg.database}"

    def users(self) -> set[str]:
        """This role's users still in pg_roles."""
        return {r for r in self.stack.dynamic_db_roles() if f"-{self.role[:8]}-" in r}

    def passwords(self) -> list[str]:
        rows = self.stack.sql(f"SELECT name, password FROM {SECRETS_TABLE}")
        return [str(p) for n, p in rows if f"-{self.role[:8]}-" in str(n)]

    def assert_no_secret_in(self, *texts: str) -> None:
        passwords = self.passwords()
        assert passwords, "no password was recorded: the test did not issue credentials"
        for text in texts:
            for password in passwords:
                assert password not in text


def free_port_url() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def python_child(tmp_path: Path, name: str, source: str) -> list[str]:
    """Write a child script and return the argv that runs it."""
    path = tmp_path / name
    path.write_text(source)
    return [sys.executable, str(path)]

