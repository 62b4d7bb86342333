"""How fast the lifetime simulation runs, and what it covered.

    python benchmarks/bench_sim.py [--lifetimes 2000] [--first 0]

Runs simulated process lifetimes (``vaultdb.testing.sim``) in this process and prints:
lifetimes and simulated pod-hours per CPU-second, Vault requests per lifetime, and how often
each fault kind, ending, login method and role kind came up. A baseline measured in the same
run (lifetimes without faults) gives the cost of the fault handling as a ratio. Not a test:
nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

from vaultdb.testing.sim.harness import run_lifetime


def run(count: int, first: int, faults: bool) -> dict[str, object]:
    seen_faults: Counter[str] = Counter()
    endings: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    requests = rotations = renewals = 0
    seconds = 0.0
    started = time.process_time()
    for seed in range(first, first + count):
        result = run_lifetime(seed, faults=faults)
        life = result.lifetime
        seconds += result.virtual_seconds
        requests += result.requests
        rotations += result.rotations
        renewals += result.renewals
        seen_faults.update(result.faults_seen)
        endings[life.ending] += 1
        kinds[f"{life.auth}{' static' if life.static else ''}"] += 1
    cpu = time.process_time() - started
    return {"cpu": cpu, "count": count, "hours": seconds / 3600, "requests": requests,
            "rotations": rotations, "renewals": renewals, "faults": seen_faults,
            "endings": endings, "kinds": kinds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lifetimes", type=int, default=2000)
    parser.add_argument("--first", type=int, default=0)
    args = parser.parse_args()
    base = run(max(100, args.lifetimes // 10), 1_000_000 + args.first, faults=False)
    full = run(args.lifetimes, args.first, faults=True)
    for name, r in (("no faults (baseline)", base), ("with faults", full)):
        cpu, count, hours = float(r["cpu"]), int(r["count"]), float(r["hours"])  # type: ignore[arg-type]
        print(f"{name}: {count} lifetimes, {hours:.0f} simulated pod-hours in {cpu:.1f} CPU-s: "
              f"{count / cpu:.0f} lifetimes/CPU-s, {hours / cpu:.0f} pod-hours/CPU-s, "
              f"{int(r['requests']) / count:.0f} Vault requests, "  # type: ignore[call-overload]
              f"{int(r['rotations']) / count:.1f} rotations per lifetime")  # type: ignore[call-overload]
    per_base = float(base["cpu"]) / int(base["count"])  # type: ignore[call-overload, arg-type]
    per_full = float(full["cpu"]) / int(full["count"])  # type: ignore[call-overload, arg-type]
    print(f"CPU per lifetime with faults / without: {per_full / per_base:.2f}")
    print("faults injected:", dict(sorted(full["faults"].items())))  # type: ignore[attr-defined]
    print("endings:", dict(full["endings"]))
    print("login / role:", dict(full["kinds"]))


if __name__ == "__main__":
    main()
