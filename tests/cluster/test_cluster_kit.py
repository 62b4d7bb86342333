"""The cluster kit itself: faults it offers can be repeated in one cluster's life."""

from __future__ import annotations

import pytest

from vaultdb.testing import VaultCluster, VaultDBStack

pytestmark = pytest.mark.slow


def test_every_node_unsealed_once_per_start(vaultdb_cluster: VaultDBStack) -> None:
    """A joining node that gets the unseal key twice unseals twice (two HA loops), and
    ``sys/step-down`` on it stays queued forever: the kit sends the key once per start."""
    for node in vaultdb_cluster.cluster.nodes:
        log = node.log_path.read_text(errors="replace")
        starts = log.count("=== vaultdb: starting")
        assert log.count("vault is unsealed") == starts, node.name


def test_step_down_twice(vaultdb_cluster: VaultDBStack) -> None:
    cluster: VaultCluster = vaultdb_cluster.cluster
    first = cluster.step_down()
    second = cluster.step_down()
    assert second is not first
    assert cluster.leader() is not second
