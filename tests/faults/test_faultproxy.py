"""The fault-injecting proxy itself, against the real OpenBao."""

from __future__ import annotations

import threading

import pytest
import requests

from vaultdb.testing import FaultProxy, VaultDBStack, wait_for


def test_modes(proxy: FaultProxy, vaultdb_stack: VaultDBStack):
    url = f"{proxy.addr}/v1/sys/health"
    assert requests.get(url, timeout=5).json()["initialized"] is True
    proxy.fail(503)
    answer = requests.get(url, timeout=5)
    assert answer.status_code == 503
    assert answer.json()["errors"]
    proxy.fail(500, match="sys/leases")
    assert requests.get(url, timeout=5).status_code == 200  # other paths still pass
    proxy.garbage()
    answer = requests.get(url, timeout=5)
    assert answer.status_code == 200
    with pytest.raises(ValueError):
        answer.json()
    proxy.blackhole()
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(url, timeout=0.5)
    proxy.passthrough()
    assert requests.get(url, timeout=5).status_code == 200
    assert proxy.counts["GET sys/health"] == 6
    assert proxy.outcomes == {"pass": 3, "fail:503": 1, "garbage": 1, "blackhole": 1}
    assert proxy.faults_served() == 3


def test_black_holed_request_is_dropped_when_the_mode_changes(proxy: FaultProxy):
    proxy.blackhole()
    errors: list[BaseException] = []

    def call() -> None:
        try:
            requests.get(f"{proxy.addr}/v1/sys/health", timeout=30)
        except requests.exceptions.RequestException as exc:
            errors.append(exc)

    t = threading.Thread(target=call, daemon=True)
    t.start()
    wait_for(lambda: proxy.outcomes["blackhole"] >= 1, timeout=10)
    proxy.passthrough()
    t.join(10)
    assert not t.is_alive()
    assert errors, "a black-holed request must never be answered"


def test_upstream_down_answers_502():
    with FaultProxy("http://127.0.0.1:9", upstream_timeout=2) as dead:
        assert requests.get(f"{dead.addr}/v1/sys/health", timeout=10).status_code == 502
        assert dead.outcomes["502"] == 1
