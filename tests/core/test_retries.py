"""Bounded retries of idempotent Vault calls, against real OpenBao behind the fault proxy.

Retries run through tenacity with the values of ``vaultdb._retry.RetryPolicy``, within the
caller's deadline: the count, the warnings, and nothing started once the deadline has passed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from vaultdb import TokenAuth
from vaultdb._vault import RequestInfo, VaultClient, VaultSettings, add_request_observer
from vaultdb.errors import PermissionDeniedError, VaultUnavailableError
from vaultdb.testing import FaultProxy, VaultDBStack


@pytest.fixture
def proxy(vaultdb_stack: VaultDBStack) -> Iterator[FaultProxy]:
    with FaultProxy(vaultdb_stack.vault_addr, upstream_timeout=10) as p:
        yield p


@pytest.fixture
def vault(proxy: FaultProxy, vaultdb_stack: VaultDBStack) -> VaultClient:
    client = VaultClient(VaultSettings(addr=proxy.addr, timeout=3), attempts=3)
    client.login(TokenAuth(token=vaultdb_stack.root_token))
    proxy.reset_counts()
    return client


def retry_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and "; retry " in r.getMessage()]


def test_a_call_that_keeps_failing_is_tried_attempts_times(
        vault: VaultClient, proxy: FaultProxy, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="vaultdb")
    proxy.fail(503)
    with pytest.raises(VaultUnavailableError, match="HTTP 503"):
        vault.lookup_self()
    assert proxy.total == 3
    warnings = retry_warnings(caplog)
    assert [w.split("; retry ")[1].split(" in ")[0] for w in warnings] == ["1", "2"]


def test_a_passing_failure_is_retried_once_and_succeeds(
        vault: VaultClient, proxy: FaultProxy, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="vaultdb")
    outcomes: list[str] = []

    def heal_after_first_failure(info: RequestInfo) -> None:
        outcomes.append(info.outcome)
        proxy.passthrough()  # runs before the backoff: attempt 2 reaches Vault

    proxy.fail(500)
    remove = add_request_observer(heal_after_first_failure)
    try:
        assert "root" in vault.lookup_self().policies
    finally:
        remove()
    assert outcomes == ["VaultUnavailableError", "ok"]
    assert len(retry_warnings(caplog)) == 1


def test_a_non_retryable_failure_is_tried_once(vault: VaultClient, proxy: FaultProxy) -> None:
    proxy.fail(403)
    with pytest.raises(PermissionDeniedError):
        vault.lookup_self()
    assert proxy.total == 1


def test_a_call_past_its_deadline_is_not_sent(vault: VaultClient, proxy: FaultProxy) -> None:
    proxy.fail(503)
    with pytest.raises(VaultUnavailableError, match="deadline passed"):
        vault.revoke_lease("database/creds/none/abc", deadline=vault.clock.monotonic())
    assert proxy.total == 0


def test_a_call_near_its_deadline_is_not_retried(vault: VaultClient, proxy: FaultProxy) -> None:
    proxy.fail(503)
    with pytest.raises(VaultUnavailableError, match="HTTP 503"):
        vault.revoke_lease("database/creds/none/abc", deadline=vault.clock.monotonic() + 0.05)
    assert proxy.total == 1


def test_the_observer_sees_status_role_and_generation(
        vault: VaultClient, proxy: FaultProxy) -> None:
    seen: list[RequestInfo] = []
    remove = add_request_observer(seen.append)
    try:
        proxy.fail(503)
        with pytest.raises(VaultUnavailableError):
            vault.revoke_lease("database/creds/none/abc", attempts=1, role="app", generation=7)
    finally:
        remove()
    assert [(i.method, i.path, i.status, i.role, i.generation) for i in seen] == [
        ("PUT", "sys/leases/revoke", 503, "app", 7)]
