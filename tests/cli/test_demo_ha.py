"""``vaultdb demo --ha``: the demo on a 3-node OpenBao Raft cluster, leader killed part-way."""

from __future__ import annotations

import os
import re

import pytest
from clitools import run_cli

SUMMARY = re.compile(r"Summary: issued (\d+), renewed (\d+), rotated (\d+), revoked (\d+), "
                     r"leaked (\d+), failed queries (\d+)")
LEADERS = re.compile(r"Vault leader: (node\d) before, (node\d) after the SIGKILL")

pytestmark = pytest.mark.slow


def test_demo_ha_rides_through_a_leader_kill() -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("VAULT_", "BAO_", "VAULTDB_"))}
    result = run_cli(["demo", "--ha", "--duration", "24"], env, timeout=300)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    match = SUMMARY.search(out)
    assert match, out
    issued, renewed, _rotated, revoked, leaked, failed = map(int, match.groups())
    assert failed == 0 and leaked == 0 and issued == revoked >= 3 and renewed >= 3, out
    leaders = LEADERS.search(out)
    assert leaders and leaders.group(1) != leaders.group(2), out
    killed = re.search(r"vault\s+SIGKILL the leader (node\d)", out)
    elected = re.search(r"vault\s+(node\d) is the new leader", out)
    assert killed and elected and killed.group(1) == leaders.group(1), out
    assert elected.group(1) == leaders.group(2)
    # Pods kept renewing after the new leader was elected.
    assert re.search(r"is the new leader.*\n(?:.*\n)*?.*pod-\d\s+renewed the lease", out), out
    assert "Result: OK" in out
    assert "CREDENTIALS EXPIRED" not in out
