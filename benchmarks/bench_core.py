"""Cost of the core, measured against baselines taken in the same run.

    python benchmarks/bench_core.py [--seconds 15]

Prints three results:

* memory: resident memory a process gains by importing vaultdb and running one provider
  (credentials fetched, renewer thread running), against the same interpreter idle;
* hot path: the cost of ``provider.credentials()`` against a plain attribute read;
* Vault load: HTTP requests to Vault per lease TTL, counted by a request observer, over a run
  with short TTLs (renewals per TTL; fetches per rotation).

Uses the real stack from ``vaultdb.testing``. Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
import time
import timeit
from collections import Counter
from pathlib import Path
from typing import Any

AGENT_RSS_MIB = 70.0  # OpenBao Agent with one database template (field facts; issue 7 measures)

RSS_PROBE = textwrap.dedent("""
    import json, os, sys, time
    def rss_kib():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    mode = sys.argv[1]
    if mode == "baseline":
        import json, logging, threading, ssl  # what any app has loaded anyway
    else:
        from vaultdb import CredentialProvider, TokenAuth
        p = CredentialProvider(os.environ["ROLE"], auth=TokenAuth(token=os.environ["TOKEN"]),
                               handle_sigterm=False)
        p.credentials()
        time.sleep(1.0)   # let the renewer run once
    print(json.dumps({"rss_kib": rss_kib()}))
    if mode != "baseline":
        p.close()
""")


def measure_memory(stack: Any, role: str, runs: int = 3) -> dict[str, float]:
    env = stack.env(ROLE=role, TOKEN=stack.create_token(ttl=300))
    results: dict[str, list[int]] = {"baseline": [], "vaultdb": []}
    for _ in range(runs):
        for mode in results:
            out = subprocess.run([sys.executable, "-c", RSS_PROBE, mode], env=env, text=True,
                                 capture_output=True, check=True, timeout=60)
            results[mode].append(json.loads(out.stdout)["rss_kib"])
    base = min(results["baseline"]) / 1024
    with_vaultdb = min(results["vaultdb"]) / 1024
    return {"baseline_mib": base, "vaultdb_mib": with_vaultdb, "added_mib": with_vaultdb - base}


def measure_hot_path(provider: Any) -> dict[str, float]:
    provider.credentials()

    class Holder:
        current = provider.credentials()

    holder = Holder()
    number = 200_000
    plain = min(timeit.repeat(lambda: holder.current, number=number, repeat=5)) / number
    hot = min(timeit.repeat(provider.credentials, number=number, repeat=5)) / number
    return {"attribute_read_ns": plain * 1e9, "credentials_ns": hot * 1e9, "ratio": hot / plain}


def measure_vault_load(stack: Any, provider_cls: Any, auth: Any, role: str,
                       seconds: float) -> dict[str, float]:
    from vaultdb import add_request_observer

    ttl = 3
    provider = provider_cls(role, auth=auth, vault_addr=stack.vault_addr, drain_seconds=0.5,
                            handle_sigterm=False)
    calls: Counter[str] = Counter()

    def counting(info: Any) -> None:
        calls["creds" if "/creds/" in info.path else info.path] += 1

    stop_counting = add_request_observer(counting)
    provider.credentials()
    time.sleep(seconds)
    status = provider.status()
    provider.close()
    stop_counting()
    ttls = seconds / ttl
    return {
        "seconds": seconds, "ttl": ttl, "renew_calls": calls["sys/leases/renew"],
        "renewals_per_ttl": calls["sys/leases/renew"] / ttls,
        "creds_reads": calls["creds"], "rotations": status.rotations,
        "fetches_per_rotation": (calls["creds"] - 1) / max(1, status.rotations),
        "logins": calls["auth/kubernetes/login"], "revokes": calls["sys/leases/revoke"],
        "total_requests": sum(calls.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from vaultdb import CredentialProvider, KubernetesAuth
    from vaultdb.testing import VaultDBStack

    with VaultDBStack.start() as stack:
        stack.create_database_role("bench", default_ttl=3, max_ttl=9)
        stack.create_database_role("bench-long", default_ttl=300, max_ttl=600)
        stack.create_kubernetes_role("bench", token_ttl=300)
        token_path = stack.write_service_account_token(stack.workdir / "sa-token")
        auth = KubernetesAuth(role="bench", token_path=str(token_path))

        memory = measure_memory(stack, "bench-long")
        with CredentialProvider("bench-long", auth=auth, vault_addr=stack.vault_addr,
                                handle_sigterm=False) as provider:
            hot = measure_hot_path(provider)
        load = measure_vault_load(stack, CredentialProvider, auth, "bench", args.seconds)

    print("vaultdb core cost (baselines measured in this run)")
    print(f"  memory   baseline interpreter {memory['baseline_mib']:.1f} MiB, with vaultdb and "
          f"one running provider {memory['vaultdb_mib']:.1f} MiB: "
          f"+{memory['added_mib']:.1f} MiB = {memory['added_mib'] / AGENT_RSS_MIB:.2f}x "
          f"an OpenBao Agent sidecar (~{AGENT_RSS_MIB:.0f} MiB)")
    print(f"  hot path credentials() {hot['credentials_ns']:.0f} ns vs attribute read "
          f"{hot['attribute_read_ns']:.0f} ns: {hot['ratio']:.1f}x (no lock, no Vault call)")
    print(f"  Vault    {load['seconds']:.0f}s at TTL {load['ttl']}s / max_ttl 9s: "
          f"{load['renewals_per_ttl']:.2f} renewals per TTL, "
          f"{load['fetches_per_rotation']:.2f} credential fetches per rotation "
          f"({load['rotations']} rotations), {load['logins']} login(s), "
          f"{load['revokes']} revocations, {load['total_requests']} requests in all")


if __name__ == "__main__":
    main()
