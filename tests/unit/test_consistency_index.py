"""Read-after-write on a cluster: which ``X-Vault-Index`` a client sends back, and with what."""

from __future__ import annotations

import base64
import json

import pytest

from vaultdb._vault import VaultCaller, VaultSettings, newer_index


def index(value: int | str, cluster: str = "c1") -> str:
    return base64.b64encode(json.dumps({"cluster": cluster, "value": str(value)}).encode()
                            ).decode()


def test_a_lagging_standby_does_not_take_the_index_back() -> None:
    assert newer_index(index(51), index(50)) == index(51)
    assert newer_index(index(51), index(52)) == index(52)
    assert newer_index(None, index(7)) == index(7)


@pytest.mark.parametrize("held, seen", [
    (index(51, "c1"), index(50, "c2")),      # another cluster (a restore, a new Vault)
    ("opaque-vault-enterprise-state", index(3)),
    (index(51), "not base64 json"),
    (index(51), base64.b64encode(b'{"cluster": "c1", "value": "-1"}').decode()),
])
def test_indexes_that_do_not_compare_take_the_one_just_seen(held: str, seen: str) -> None:
    assert newer_index(held, seen) == seen


def test_the_forwarding_hint_goes_with_an_index_only() -> None:
    caller = VaultCaller(VaultSettings(addr="http://127.0.0.1:1"))
    caller.record_index({})
    assert caller.headers == {}  # a server without indexes gets no consistency headers
    caller.record_index({"x-vault-index": index(9)})
    caller.record_index({"x-vault-index": index(8)})
    assert caller.headers == {"X-Vault-Index": index(9),
                              "X-Vault-Inconsistent": "forward-active-node"}
    caller.forget_index()
    assert caller.headers == {}
