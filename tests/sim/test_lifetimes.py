"""Thousands of simulated process lifetimes through the real engine, checked step by step.

``VAULTDB_SIM_LIFETIMES`` sets how many (10,000 by default, as CI runs them, in chunks the
xdist workers share); a failure names its seed and the command that replays it with a trace.
"""

from __future__ import annotations

import os

import pytest

from vaultdb.testing.sim.harness import run_lifetime

TOTAL = int(os.environ.get("VAULTDB_SIM_LIFETIMES", "10000"))
CHUNKS = 20


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_lifetimes_keep_every_invariant(chunk: int) -> None:
    per_chunk = max(1, TOTAL // CHUNKS)
    for seed in range(chunk * per_chunk, (chunk + 1) * per_chunk):
        run_lifetime(seed)


@pytest.mark.parametrize("seed", range(50))
def test_fault_free_lifetimes(seed: int) -> None:
    """Without faults every retired lease must be revoked within its drain window too."""
    run_lifetime(1_000_000 + seed, faults=False)
