"""Bounded retries of idempotent Vault calls, against real OpenBao behind the fault proxy.

The first attempt runs without tenacity; only a retryable failure brings it in, and then the
retries must look exactly as if tenacity had run every attempt: same count, same warnings.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from vaultdb import TokenAuth
from vaultdb._vault import VaultClient, VaultSettings, add_request_observer
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

    def heal_after_first_failure(method: str, path: str, seconds: float, outcome: str) -> None:
        outcomes.append(outcome)
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


def test_a_call_past_its_budget_is_not_retried(vault: VaultClient, proxy: FaultProxy) -> None:
    proxy.fail(503)
    with pytest.raises(VaultUnavailableError):
        vault.revoke_lease("database/creds/none/abc", budget=0.0)
    assert proxy.total == 1
