"""A fleet of providers starting at once against a 3-node OpenBao Raft cluster, with the
leader killed mid-start, against the same fleet with no failover (same run, same cluster).

    python benchmarks/bench_cluster_fleet.py [--providers 200] [--processes 10] [--address lb]

Each of ``--processes`` child processes holds ``providers / processes`` providers on as many
threads, released together (as ``bench_vs_agent.py``'s fleet). The providers log in with a
token (``TokenAuth``: Kubernetes-auth logins are refused by standby nodes for 30 s after
the auth method is configured, see docs/cluster.md) through the round-robin balancer in
front of every node (``--address lb``) or the active-only one (``--address active``).
Run 1: no fault. Run 2: the leader is
SIGKILLed half-way to run 1's median time to credentials. Reported per run: errors, p50/p99
time to credentials; for run 2 the failover window seen by clients (kill to the first
successful lease renewal) and the Vault requests per provider while the cluster had no
leader. Not a test: nothing asserts a time.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

CHILD = textwrap.dedent("""
    import json, sys, threading, time
    from vaultdb import CredentialProvider, LeaseRenewed, TokenAuth
    from vaultdb._vault import add_request_observer
    n, addr, role, wait_renew_after = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    tokens = json.loads(sys.stdin.readline())
    providers = [CredentialProvider(role, auth=TokenAuth(token=t), vault_addr=addr,
                                    handle_sigterm=False, drain_seconds=1, request_timeout=5,
                                    fetch_timeout=60) for t in tokens]
    requests, lock = [], threading.Lock()
    def observe(info):
        with lock:  # (sent at, path, outcome, HTTP status)
            requests.append((time.time() - info.seconds, info.path, info.outcome, info.status))
    add_request_observer(observe)
    obtained, renewed, errors = [None] * n, [[] for _ in range(n)], []
    for i, p in enumerate(providers):
        p.subscribe(lambda e, i=i: renewed[i].append(time.time()), LeaseRenewed)
    barrier = threading.Barrier(n + 1)
    def run(i):
        barrier.wait()
        try:
            providers[i].credentials()
            obtained[i] = time.time()
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}"[:300])
    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    print("ready", flush=True)
    sys.stdin.readline()
    barrier.wait()
    for t in threads:
        t.join()
    after = float(sys.stdin.readline())  # wait for one renewal per provider after this time
    end = time.time() + 60
    while time.time() < end and any(o and not any(r > after for r in rs)
                                    for o, rs in zip(obtained, renewed)):
        time.sleep(0.1)
    closers = [threading.Thread(target=p.close) for p in providers]
    for t in closers:
        t.start()
    for t in closers:
        t.join()
    print(json.dumps({"obtained": obtained, "renewed": renewed, "errors": errors,
                      "requests": requests}), flush=True)
""")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def run_fleet(stack: Any, cluster: Any, addr: str, role: str, total: int, processes: int,
              kill_after: float | None, work: Path) -> dict[str, Any]:
    per = math.ceil(total / processes)
    tokens = [[stack.create_token(ttl=600) for _ in range(per)] for _ in range(processes)]
    cluster.wait_replicated()
    children = [subprocess.Popen([sys.executable, "-c", CHILD, str(per), addr, role, "0"],
                                 text=True, cwd=work, stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                for _ in range(processes)]
    for child, toks in zip(children, tokens, strict=True):
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(json.dumps(toks) + "\n")
        child.stdin.flush()
    for child in children:
        assert child.stdout is not None and child.stderr is not None
        line = child.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"fleet child failed: {line} {child.stderr.read()[-2000:]}")
    killed: dict[str, Any] = {}
    go = time.time()
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    if kill_after is not None:
        def kill() -> None:
            time.sleep(max(0.0, go + kill_after - time.time()))
            leader = cluster.leader()
            killed["at"] = time.time()
            cluster.kill(leader)
            killed["node"] = leader.name
            killed["new"] = cluster.leader(timeout=60).name
            killed["elected"] = time.time()
        killer = threading.Thread(target=kill)
        killer.start()
        killer.join()
    after = killed.get("at", go)
    for child in children:
        assert child.stdin is not None
        child.stdin.write(f"{after}\n")
        child.stdin.flush()
    results = []
    for child in children:
        assert child.stdout is not None
        results.append(json.loads(child.stdout.readline()))
        child.wait(60)
    obtained = [t - go for r in results for t in r["obtained"] if t]
    errors = [e for r in results for e in r["errors"]]
    requests = [q for r in results for q in r["requests"]]
    out: dict[str, Any] = {
        "providers": per * processes, "obtained": len(obtained), "errors": errors,
        "ready_p50": pct(obtained, 50), "ready_p99": pct(obtained, 99),
        "requests_per_provider": len(requests) / (per * processes),
        "failed_requests": sum(1 for q in requests if q[2] != "ok"),
    }
    if killed:
        at, elected = killed["at"], killed["elected"]
        renewals = sorted(t for r in results for rs in r["renewed"] for t in rs if t > at)
        firsts = [min(t for t in rs if t > at) - at for r in results for rs in r["renewed"]
                  if any(t > at for t in rs)]
        # Requests *sent* after the kill: one already in flight may still succeed.
        ok_after = sorted(q[0] for q in requests if q[0] > at and q[2] == "ok")
        window_end = ok_after[0] if ok_after else elected
        during = [q for q in requests if at <= q[0] <= max(window_end, elected)]
        out.update({
            "killed": killed["node"], "new_leader": killed["new"],
            "kill_at": at - go, "elected_after": elected - at,
            "first_ok_request_after": (ok_after[0] - at) if ok_after else None,
            "first_renewal_after": (renewals[0] - at) if renewals else None,
            "renewal_after_kill_p50": pct(firsts, 50), "renewal_after_kill_p99": pct(firsts, 99),
            "renewed_after_kill": len(firsts),
            "requests_during_failover_per_provider": len(during) / (per * processes),
            "failed_requests_during_failover": sum(1 for q in during if q[2] != "ok"),
            "failures_during_failover": dict(Counter(f"{q[1].split('/')[0]} {q[2]} {q[3]}"
                                                     for q in during if q[2] != "ok")),
        })
    return out


def users_after_close(stack: Any, ttl: int) -> tuple[int, int, int]:
    """Dynamic users still in PostgreSQL right after every provider closed, once the lease TTL
    (plus 10 s) has passed, and the leases Vault still holds for the role then.

    An orphan from a credentials read whose answer was lost in the failover still has a
    lease, which Vault revokes when it expires. A user left with no lease at all was created
    by the database plugin on a leader killed before it stored the lease: Vault never
    revokes it, and no client ever saw its name."""
    now = len(stack.dynamic_db_roles())
    end = time.monotonic() + ttl + 10
    while stack.dynamic_db_roles() and time.monotonic() < end:
        time.sleep(0.5)
    try:
        listed = stack.root_client().sys.list_leases(prefix="database/creds/fleet")
        leases = len(listed["data"]["keys"])
    except Exception:  # hvac raises InvalidPath when there are none
        leases = 0
    return now, len(stack.dynamic_db_roles()), leases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--providers", type=int, default=200)
    parser.add_argument("--processes", type=int, default=10)
    parser.add_argument("--address", choices=("lb", "active"), default="lb")
    parser.add_argument("--ttl", type=int, default=20, help="lease default_ttl (s)")
    args = parser.parse_args()
    from vaultdb.testing import VaultCluster, VaultDBStack

    work = Path(tempfile.mkdtemp(prefix="vaultdb-bench-cluster-"))
    with VaultCluster(work / "nodes") as cluster:
        t0 = time.monotonic()
        cluster.start()
        print(f"cluster ready in {time.monotonic() - t0:.1f}s", flush=True)
        with VaultDBStack.start(work / "stack", vault=cluster) as stack:
            addr = cluster.addr if args.address == "lb" else cluster.active_addr
            stack.create_database_role("fleet", default_ttl=args.ttl, max_ttl=args.ttl * 10)
            base = run_fleet(stack, cluster, addr, "fleet", args.providers, args.processes,
                             None, work)
            print("no failover:", json.dumps(base), flush=True)
            base["users_left"] = users_after_close(stack, args.ttl)
            cluster.heal()
            fail = run_fleet(stack, cluster, addr, "fleet", args.providers, args.processes,
                             base["ready_p50"] / 2, work)
            print("failover:", json.dumps(fail), flush=True)
            fail["users_left"] = users_after_close(stack, args.ttl)
    print()
    print(f"| {args.providers} providers / {args.processes} processes via {args.address} "
          "| no failover | leader killed mid-start |")
    print("| --- | --- | --- |")
    print(f"| errors | {len(base['errors'])} | {len(fail['errors'])} |")
    print(f"| time to credentials p50 (s) | {base['ready_p50']:.2f} | {fail['ready_p50']:.2f} "
          f"(x{fail['ready_p50'] / base['ready_p50']:.1f}) |")
    print(f"| time to credentials p99 (s) | {base['ready_p99']:.2f} | {fail['ready_p99']:.2f} "
          f"(x{fail['ready_p99'] / base['ready_p99']:.1f}) |")
    print(f"| Vault requests per provider (whole run) | {base['requests_per_provider']:.2f} | "
          f"{fail['requests_per_provider']:.2f} |")
    print(f"| leader killed at (s after start) | - | {fail['kill_at']:.2f} |")
    print(f"| new leader elected after the kill (s) | - | {fail['elected_after']:.2f} |")
    print(f"| kill -> first successful request / renewal (s) | - | "
          f"{fail['first_ok_request_after']:.2f} / {fail['first_renewal_after']:.2f} |")
    print(f"| kill -> each provider's first renewal p50/p99 (s) | - | "
          f"{fail['renewal_after_kill_p50']:.2f} / {fail['renewal_after_kill_p99']:.2f} |")
    print(f"| Vault requests per provider during the failover | - | "
          f"{fail['requests_during_failover_per_provider']:.2f} |")
    print("| database users left right after close / after the lease TTL / leases Vault "
          "still holds | " + " / ".join(map(str, base["users_left"])) + " | "
          + " / ".join(map(str, fail["users_left"])) + " |")
    if base["errors"] or fail["errors"]:
        print("errors:", (base["errors"] + fail["errors"])[:5])


if __name__ == "__main__":
    main()
