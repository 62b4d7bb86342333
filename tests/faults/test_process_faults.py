"""The process itself dies: SIGTERM in the middle of a rotation, and SIGKILL.

Each test runs a child "pod" (``fault_child.py``: provider, engine, two query threads) and
signals it. SIGTERM must revoke every lease it holds, the one being rotated out included;
after SIGKILL nothing can run, so the lease lives until its TTL and Vault drops the user then.
The SIGKILL test reports that exposure window (also measured by
``benchmarks/bench_vs_agent.py``).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from vaultdb.testing import FaultProxy, VaultDBStack, database_users_of_role, wait_for

CHILD = Path(__file__).with_name("fault_child.py")


class Child:
    """The child process and what it printed, with arrival times."""

    def __init__(self, stack: VaultDBStack, role: str, token: Path, vault_addr: str) -> None:
        env = stack.env(ROLE=role, SA_TOKEN=str(token))
        env["VAULT_ADDR"] = env["BAO_ADDR"] = vault_addr
        self.proc = subprocess.Popen([sys.executable, str(CHILD)], env=env, text=True,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.lines: list[tuple[float, list[str]]] = []
        self.stderr = ""
        self._readers = [threading.Thread(target=self._read_out, daemon=True),
                         threading.Thread(target=self._read_err, daemon=True)]
        for t in self._readers:
            t.start()

    def _read_out(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append((time.monotonic(), line.split()))

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()

    def first(self, kind: str) -> list[str] | None:
        return next((words for _, words in self.lines if words and words[0] == kind), None)

    def failures_before(self, moment: float) -> list[str]:
        return [" ".join(w) for at, w in self.lines if w and w[0] == "fail" and at < moment]

    def queries_ok(self) -> int:
        counts = [int(w[1]) for _, w in self.lines if w and w[0] == "ok"]
        return counts[-1] if counts else 0

    def wait(self, timeout: float = 30) -> int:
        code = self.proc.wait(timeout)
        for t in self._readers:
            t.join(5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def child_roles(vaultdb_stack: VaultDBStack, vaultdb_role_name: str, tmp_path: Path):
    def make(default_ttl: int, max_ttl: int) -> tuple[str, Path]:
        vaultdb_stack.create_database_role(vaultdb_role_name, default_ttl=default_ttl,
                                           max_ttl=max_ttl)
        vaultdb_stack.create_kubernetes_role(vaultdb_role_name, token_ttl=60)
        token = vaultdb_stack.write_service_account_token(tmp_path / "sa" / "token")
        return vaultdb_role_name, token

    return make


def test_sigterm_during_a_rotation_revokes_both_leases(child_roles, proxy: FaultProxy,
                                                       vaultdb_stack: VaultDBStack):
    # TTL 6 / max_ttl 9: the first renewal is capped, so the lease rotates at about 7 s.
    role, token = child_roles(6, 9)
    proxy.delay(1.5, match=r"/creds/")  # the rotation's fetch takes 1.5 s ...
    child = Child(vaultdb_stack, role, token, proxy.addr)
    try:
        wait_for(lambda: child.first("ready"), timeout=30)
        first_user = child.first("ready")[1]  # type: ignore[index]
        creds_path = f"GET database/creds/{role}"
        # ... and SIGTERM lands while it is in flight: the old lease is still held, the new
        # one is being created.
        wait_for(lambda: proxy.counts[creds_path] >= 2, timeout=20)
        assert child.first("rotated") is None
        signalled = time.monotonic()
        child.proc.send_signal(signal.SIGTERM)
        code = child.wait(30)
    finally:
        child.kill()
    assert code == -signal.SIGTERM  # died of SIGTERM, as it would have without vaultdb
    assert child.failures_before(signalled) == [], child.failures_before(signalled)
    assert child.queries_ok() > 0
    log = child.stderr
    assert "SIGTERM received: revoking vaultdb credentials before exit" in log, log
    assert "rotated credentials" in log, log  # the rotation completed before the shutdown
    assert f"(user '{first_user}'" in log, log  # the rotated-out lease was revoked
    assert log.count("revoked lease") >= 2, log
    assert database_users_of_role(vaultdb_stack, role) == set()


def test_sigkill_leaves_the_lease_to_its_ttl(child_roles, vaultdb_stack: VaultDBStack,
                                             record_property):
    role, token = child_roles(5, 60)
    child = Child(vaultdb_stack, role, token, vaultdb_stack.vault_addr)
    try:
        wait_for(lambda: child.first("ready"), timeout=30)
        wait_for(lambda: child.queries_ok() >= 20, timeout=20)
        user = child.first("ready")[1]  # type: ignore[index]
        killed = time.monotonic()
        child.proc.send_signal(signal.SIGKILL)
        assert child.wait(10) == -signal.SIGKILL
    finally:
        child.kill()
    assert child.failures_before(killed) == []
    # Nothing ran at exit: the user is still there, until the lease's TTL runs out.
    assert user in database_users_of_role(vaultdb_stack, role)
    wait_for(lambda: not database_users_of_role(vaultdb_stack, role), timeout=30, interval=0.05)
    exposure = time.monotonic() - killed
    record_property("sigkill_exposure_seconds", round(exposure, 2))
    print(f"SIGKILL exposure window: the database user outlived the process by {exposure:.1f}s "
          f"(lease TTL 5 s)")
