"""Run or replay simulated lifetimes: ``python -m vaultdb.testing.sim --seed N --trace``."""

from __future__ import annotations

import argparse
import sys

from .harness import InvariantViolation, run_lifetime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vaultdb.testing.sim")
    parser.add_argument("--seed", type=int, default=None, help="replay this one lifetime")
    parser.add_argument("--count", type=int, default=100, help="lifetimes from --first")
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--trace", action="store_true", help="log and print the trace")
    parser.add_argument("--no-faults", action="store_true")
    args = parser.parse_args(argv)
    seeds = [args.seed] if args.seed is not None else range(args.first, args.first + args.count)
    failed = 0
    for seed in seeds:
        try:
            result = run_lifetime(seed, faults=not args.no_faults, trace=args.trace)
        except InvariantViolation as exc:
            failed += 1
            print(f"seed {seed}: FAILED\n{exc}", file=sys.stderr)
            continue
        if args.seed is not None:
            print("\n".join(result.trace) if args.trace else "")
            print(f"seed {seed}: ok ({result.lifetime.describe()}); {result.requests} requests, "
                  f"{result.leases} leases, {result.rotations} rotations")
    if args.seed is None:
        print(f"{len(seeds) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
