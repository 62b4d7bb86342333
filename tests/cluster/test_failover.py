"""Leader failover, frozen standby and rolling restart on a real 3-node OpenBao Raft cluster.

Every scenario runs twice: with the provider pointed at one (standby) node's address, which
forwards to whichever node leads, and through the round-robin balancer in front of every node
(a Kubernetes Service). Rotation runs throughout (short TTLs), queries run on three threads
through a SQLAlchemy engine attached with ``vaultdb.integrations.sqlalchemy``. Each checks:
no query failed while the credentials were valid, a renewal (or rotation) succeeded after the
fault, revocation at close worked and no database user of the role is left.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from clusterkit import ClusterScenario

from vaultdb.testing import ClusterNode, FaultProxy, VaultCluster, VaultDBStack, wait_for

pytestmark = pytest.mark.slow

VIA = ["node", "balancer"]


def address(cluster: VaultCluster, via: str, spare: ClusterNode) -> str:
    """The provider's Vault address: *spare*'s own address, or the balancer."""
    return spare.addr if via == "node" else cluster.addr


@pytest.fixture
def cluster(vaultdb_cluster: VaultDBStack) -> VaultCluster:
    return vaultdb_cluster.cluster


@pytest.fixture
def spare(cluster: VaultCluster) -> ClusterNode:
    """A standby no fault touches (the "one node's address" the provider is pointed at)."""
    return cluster.standbys()[0]


@pytest.fixture
def held() -> Iterator[Callable[[str], FaultProxy]]:
    """A FaultProxy in front of an address; see ``hold_then_kill``."""
    proxies: list[FaultProxy] = []

    def make(upstream: str) -> FaultProxy:
        proxy = FaultProxy(upstream, upstream_timeout=10)
        proxies.append(proxy)
        return proxy

    yield make
    for p in proxies:
        p.close()


def kill_leader(cluster: VaultCluster) -> tuple[ClusterNode, ClusterNode, float]:
    """SIGKILL the leader; returns (old leader, new leader, monotonic time of the kill)."""
    old = cluster.leader()
    killed_at = time.monotonic()
    cluster.kill(old)
    new = cluster.leader()
    assert new is not old
    return old, new, killed_at


@pytest.mark.parametrize("via", VIA)
def test_leader_killed_in_steady_state(scenario: Callable[..., ClusterScenario],
                                       cluster: VaultCluster, spare: ClusterNode,
                                       via: str) -> None:
    s = scenario(address(cluster, via, spare))
    s.wait_renewal_after(time.monotonic())  # steady state: renewals flow
    _, _, killed_at = kill_leader(cluster)
    s.wait_renewal_after(killed_at)
    s.load.progressed()
    s.finish()


def hold_then_kill(proxy: FaultProxy, cluster: VaultCluster, match: str) -> float:
    """Hold requests matching *match* for 2 s; kill the leader as soon as one arrives, so it
    reaches the cluster mid-election. Returns when the leader was killed."""
    proxy.reset_counts()
    proxy.delay(2.0, match=match)
    wait_for(lambda: any(r.outcome == "delay" for r in list(proxy.history)), timeout=60,
             interval=0.01)
    _, _, killed_at = kill_leader(cluster)
    proxy.passthrough()
    return killed_at


@pytest.mark.parametrize("via", VIA)
def test_leader_killed_during_renewal(scenario: Callable[..., ClusterScenario],
                                      cluster: VaultCluster, spare: ClusterNode,
                                      held: Callable[[str], FaultProxy], via: str) -> None:
    proxy = held(address(cluster, via, spare))
    s = scenario(proxy.addr)
    killed_at = hold_then_kill(proxy, cluster, r"^sys/leases/renew$")
    s.wait_renewal_after(killed_at)
    s.load.progressed()
    s.finish()


@pytest.mark.parametrize("via", VIA)
def test_leader_killed_during_rotation_read(scenario: Callable[..., ClusterScenario],
                                            cluster: VaultCluster, spare: ClusterNode,
                                            held: Callable[[str], FaultProxy],
                                            via: str) -> None:
    proxy = held(address(cluster, via, spare))
    # 8 s leases capped at 12 s: the first renewal is capped, the rotation's read comes
    # about 8-10 s after the start.
    s = scenario(proxy.addr, default_ttl=8, max_ttl=14)
    first = s.provider.credentials().username
    killed_at = hold_then_kill(proxy, cluster, r"^database/creds/")
    wait_for(lambda: s.provider.credentials().username != first, timeout=40)
    s.wait_renewal_after(killed_at)
    s.load.progressed()
    s.finish()


@pytest.mark.parametrize("via", VIA)
def test_leader_stepped_down(scenario: Callable[..., ClusterScenario], cluster: VaultCluster,
                             spare: ClusterNode, via: str) -> None:
    s = scenario(address(cluster, via, spare))
    s.wait_renewal_after(time.monotonic())
    stepped_at = time.monotonic()
    old = cluster.step_down()
    assert cluster.leader() is not old
    s.wait_renewal_after(stepped_at)
    s.load.progressed()
    s.finish()


@pytest.mark.parametrize("via", VIA)
def test_standby_frozen(scenario: Callable[..., ClusterScenario], cluster: VaultCluster,
                        spare: ClusterNode, via: str) -> None:
    s = scenario(address(cluster, via, spare))
    frozen = next(n for n in cluster.standbys() if n is not spare)
    cluster.pause(frozen)
    frozen_at = time.monotonic()
    s.wait_renewal_after(frozen_at)
    s.wait_renewal_after(time.monotonic())  # and the next one: no connection stuck on it
    s.load.progressed()
    s.finish()  # closed while the standby is still frozen
    cluster.resume(frozen)


@pytest.mark.parametrize("via", VIA)
def test_rolling_restart(scenario: Callable[..., ClusterScenario], cluster: VaultCluster,
                         spare: ClusterNode, via: str) -> None:
    s = scenario(address(cluster, via, spare))
    s.wait_renewal_after(time.monotonic())
    for node in cluster.roll():
        s.wait_renewal_after(time.monotonic())  # every step: renewals go on
        s.load.progressed()
        assert node.is_running
    s.finish()


@pytest.mark.parametrize("via", VIA)
def test_close_while_the_cluster_has_no_leader(scenario: Callable[..., ClusterScenario],
                                               cluster: VaultCluster, spare: ClusterNode,
                                               via: str) -> None:
    """Revocation at exit keeps retrying while the cluster elects a leader (about 4-5 s,
    well inside the default 10 s ``revoke_timeout``)."""
    s = scenario(address(cluster, via, spare))
    user = s.provider.credentials().username
    cluster.kill(cluster.leader())  # close() starts at once, before any election
    s.finish()
    assert user not in s.users()


@pytest.mark.parametrize("via", VIA)
def test_start_during_an_election(scenario: Callable[..., ClusterScenario],
                                  cluster: VaultCluster, spare: ClusterNode, via: str) -> None:
    """The first ``credentials()`` of a pod that starts while the leader is being replaced
    (the fleet benchmark's case, small): it waits for the new leader instead of failing."""
    killed: list[float] = []

    def kill_leader_now() -> None:
        leader = cluster.leader()
        killed.append(time.monotonic())
        cluster.kill(leader)

    s = scenario(address(cluster, via, spare), before_start=kill_leader_now)
    s.wait_renewal_after(killed[0])
    s.finish()
