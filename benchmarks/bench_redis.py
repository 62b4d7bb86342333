"""Hot-path cost of ``vaultdb.integrations.redis`` against a plain redis-py client.

Run: ``python benchmarks/bench_redis.py [--quick]``. Starts the real test stack (OpenBao) and a
``redis-server`` with ACLs on 127.0.0.1, then measures, in the same run and on the same
server:

* checkout: ``pool.get_connection()`` + ``pool.release()`` on a warm pool (what every command
  pays; the adapter adds its generation check here);
* command: ``PING`` round trip through ``redis.Redis``;
* new connection: ``disconnect()`` + ``connect()`` (TCP, ``HELLO``/``AUTH``; the adapter adds
  its credential provider and stamp).

The plain side logs in as a static ACL user with a static password; the vaultdb side uses a
provider with a long lease (no rotation during the run). Rounds alternate between the two and
the median round is reported, so drift on a busy machine hits both alike. This is a
benchmark, not a test: it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import time
from collections.abc import Callable
from typing import Any

import redis
from vaultdb.integrations.redis import from_url

from vaultdb import CredentialProvider, TokenAuth
from vaultdb.testing import VaultDBStack, VaultRedis


def per_op(fn: Callable[[], object], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def compare(name: str, plain: Callable[[], object], vault: Callable[[], object], *, n: int,
            rounds: int) -> tuple[str, float, float, float]:
    for fn in (plain, vault):  # warm up
        per_op(fn, max(1, n // 10))
    a: list[float] = []
    b: list[float] = []
    for i in range(rounds):
        pair = [(plain, a), (vault, b)] if i % 2 == 0 else [(vault, b), (plain, a)]
        for fn, out in pair:
            out.append(per_op(fn, n))
    pa, pb = statistics.median(a), statistics.median(b)
    return name, pa, pb, pb / pa


def checkout(client: redis.Redis) -> Callable[[], None]:
    pool = client.connection_pool

    def run() -> None:
        pool.release(pool.get_connection())

    return run


def reconnect(client: redis.Redis) -> Callable[[], None]:
    conn: Any = client.connection_pool.get_connection()

    def run() -> None:
        conn.disconnect()
        conn.connect()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    args = parser.parse_args()
    scale, rounds = (1, 3) if args.quick else (5, 7)
    with VaultDBStack.start() as stack:
        kit = VaultRedis.start(stack)
        try:
            kit.create_role("bench", default_ttl=3600, max_ttl=7200)
            password = secrets.token_urlsafe(24)
            with kit.server.admin() as admin:
                admin.acl_setuser("static", enabled=True, passwords=[f"+{password}"],
                                  keys=["*"], commands=["+@all"])
            provider = CredentialProvider("bench", vault_addr=stack.vault_addr,
                                          auth=TokenAuth(token=stack.create_token(ttl=7200)),
                                          handle_sigterm=False)
            plain = redis.Redis.from_url(kit.url(), username="static", password=password)
            vault = from_url(kit.url(), provider=provider)
            results = [
                compare("checkout + release", checkout(plain), checkout(vault),
                        n=4000 * scale, rounds=rounds),
                compare("PING round trip", plain.ping, vault.ping, n=1000 * scale,
                        rounds=rounds),
                compare("new connection (HELLO/AUTH)", reconnect(plain), reconnect(vault),
                        n=100 * scale, rounds=rounds),
            ]
            print(f"{'operation':32} {'plain µs':>10} {'vaultdb µs':>11} {'ratio':>7}")
            for name, pa, pb, ratio in results:
                print(f"{name:32} {pa * 1e6:10.1f} {pb * 1e6:11.1f} {ratio:7.2f}")
            provider.close()
        finally:
            kit.close()


if __name__ == "__main__":
    main()
