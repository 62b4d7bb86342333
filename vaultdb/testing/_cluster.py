"""A real OpenBao cluster: N ``bao server`` processes on Integrated Storage (Raft), on loopback.

Production Vault is a 3- or 5-node Raft cluster whose leader changes on every upgrade, drain or
crash; a dev server (one node, in memory) shows none of that. :class:`VaultCluster` starts N
nodes that ``retry_join`` each other, initialises the first one (a single unseal key share),
unseals every node and waits until each one is a Raft *voter*: autopilot promotes a joined
node only after its stabilisation time, and killing the leader before every node votes leaves
the cluster without quorum. The kit shortens that time (and Raft's timers, with
``performance_multiplier = 1``) so a cluster is ready in about 12 s and elects a new leader in
about 5 s.

Faults: :meth:`VaultCluster.kill` (SIGKILL), :meth:`~VaultCluster.pause` /
:meth:`~VaultCluster.resume` (SIGSTOP/SIGCONT), :meth:`~VaultCluster.step_down`,
:meth:`~VaultCluster.restart` (same data directory: the node rejoins and is unsealed) and
:meth:`~VaultCluster.roll` (an upgrade: every node restarted in turn, the leader last).
:meth:`~VaultCluster.heal` puts a damaged cluster back to "every node up, unsealed, voting".
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._lb import RoundRobinBalancer
from ._openbao import find_bao_binary
from ._ports import free_port
from ._procs import Watchdog, stop_process_group, tail

if TYPE_CHECKING:
    import hvac

__all__ = ["ClusterError", "ClusterNode", "VaultCluster"]

logger = logging.getLogger(__name__)

_START_TIMEOUT = 60.0
_READY_TIMEOUT = 90.0
_UNSEAL_RESEND = 20.0
_REQUEST_TIMEOUT = 30.0  # sys/init on a busy machine takes seconds (Raft bootstrap)


class ClusterError(RuntimeError):
    """The cluster did not reach the state asked for in time (message has the log tails)."""


@dataclass(frozen=True)
class _Answer:
    status: int
    body: dict[str, Any]


class ClusterNode:
    """One ``bao server`` process of a :class:`VaultCluster` (fixed ports and data directory)."""

    def __init__(self, index: int, workdir: Path, *, bao_bin: str) -> None:
        self.index = index
        self.name = f"node{index}"
        self.workdir = workdir
        self.api_port = free_port()
        self.cluster_port = free_port()
        self.bao_bin = bao_bin
        self.log_path = workdir / "openbao.log"
        self.config_path = workdir / "config.hcl"
        self._proc: subprocess.Popen[bytes] | None = None
        self.paused = False

    def __repr__(self) -> str:
        state = "paused" if self.paused else "running" if self.is_running else "stopped"
        return f"ClusterNode({self.name!r}, addr={self.addr!r}, {state})"

    @property
    def addr(self) -> str:
        """This node's API address (a client pointed here follows leader changes)."""
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def write_config(self, peers: Sequence[ClusterNode]) -> None:
        raft = self.workdir / "raft"
        raft.mkdir(parents=True, exist_ok=True)
        joins = "".join(
            f'  retry_join {{\n    leader_api_addr = "{peer.addr}"\n  }}\n'
            for peer in peers
            if peer is not self
        )
        self.config_path.write_text(
            f'storage "raft" {{\n  path = "{raft}"\n  node_id = "{self.name}"\n'
            # Raft's timers scaled for a LAN (1 s election timeout instead of 5 s).
            f"  performance_multiplier = 1\n{joins}}}\n"
            f'listener "tcp" {{\n  address = "127.0.0.1:{self.api_port}"\n'
            f'  cluster_address = "127.0.0.1:{self.cluster_port}"\n  tls_disable = true\n}}\n'
            f'api_addr = "{self.addr}"\n'
            f'cluster_addr = "https://127.0.0.1:{self.cluster_port}"\n'
            "disable_mlock = true\n"
        )

    def spawn(self, watchdog: Watchdog | None) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== vaultdb: starting {self.name} on {self.addr} ===\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                [self.bao_bin, "server", f"-config={self.config_path}", "-log-level=info"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.workdir,
                start_new_session=True,
            )
        self.paused = False
        if watchdog is not None:
            watchdog.watch(self._proc.pid)

    def signal(self, sig: signal.Signals) -> None:
        if self._proc is None or not self.is_running:
            raise ClusterError(f"{self.name} is not running")
        os.killpg(self._proc.pid, sig)

    def stop(self, watchdog: Watchdog | None, *, kill: bool = False) -> None:
        if self._proc is None:
            return
        stop_process_group(self._proc, first_signal=signal.SIGKILL if kill else signal.SIGTERM,
                           grace=10.0, name=f"OpenBao {self.name}")
        if watchdog is not None:
            watchdog.unwatch(self._proc.pid)
        self._proc = None
        self.paused = False

    def request(self, method: str, path: str, data: dict[str, Any] | None = None, *,
                token: str | None = None, timeout: float = _REQUEST_TIMEOUT) -> _Answer:
        """One raw HTTP call (urllib: no client state to go stale across restarts)."""
        req = urllib.request.Request(
            f"{self.addr}/v1/{path}", method=method,
            data=json.dumps(data).encode() if data is not None else None,
        )
        if token is not None:
            req.add_header("X-Vault-Token", token)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
                return _Answer(resp.status, json.loads(raw) if raw else {})
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                body = {}
            return _Answer(exc.code, body)

    def health(self) -> int | None:
        """``sys/health`` status: 200 active, 429 standby, 503 sealed, 501 uninitialised;
        ``None`` when the node does not answer within a second."""
        if self.paused or not self.is_running:
            return None
        try:
            return self.request("GET", "sys/health", timeout=1.0).status
        except (OSError, ValueError):
            return None


class VaultCluster:
    """N OpenBao server nodes with Raft storage on 127.0.0.1, plus a round-robin balancer.

    ``addr`` is the balancer (what a Kubernetes Service in front of every Vault pod gives a
    client); ``nodes[i].addr`` reaches one node directly. ``client()`` and ``root_token`` make
    it usable as the Vault of a :class:`~vaultdb.testing.VaultDBStack`
    (``VaultDBStack.start(vault=cluster)``): configuration is written through the leader.
    """

    def __init__(self, workdir: str | os.PathLike[str], *, size: int = 3,
                 bao_bin: str | None = None, watchdog: Watchdog | None = None,
                 stabilization_time: str = "1s") -> None:
        if size < 1:
            raise ValueError("a cluster needs at least one node")
        self.workdir = Path(workdir)
        bao = bao_bin or find_bao_binary()
        self.nodes = [ClusterNode(i, self.workdir / f"node{i}", bao_bin=bao) for i in range(size)]
        self._owns_watchdog = watchdog is None
        self._watchdog = watchdog
        self._stabilization_time = stabilization_time
        self._unseal_key = ""
        self._root_token = ""
        backends = [("127.0.0.1", n.api_port) for n in self.nodes]
        #: Every node, round-robin (a Service in front of every Vault pod).
        self.balancer = RoundRobinBalancer(backends)
        #: The leader only (the Helm chart's active-only ``vault-active`` Service).
        self.active_balancer = RoundRobinBalancer(backends, active_only=True)
        self.started_in: float | None = None

    def __repr__(self) -> str:
        return f"VaultCluster(addr={self.addr!r}, nodes={self.nodes!r})"

    def __enter__(self) -> VaultCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ accessors

    @property
    def addr(self) -> str:
        """The balancer's address: connections spread round-robin over every live node."""
        return self.balancer.addr

    @property
    def active_addr(self) -> str:
        """The active-only balancer's address: connections go to the current leader."""
        return self.active_balancer.addr

    @property
    def addrs(self) -> list[str]:
        return [n.addr for n in self.nodes]

    @property
    def root_token(self) -> str:
        """The root token from ``sys/init``. Deliberately absent from ``repr``."""
        return self._root_token

    @property
    def ca_cert(self) -> Path | None:
        return None

    def client(self, token: str | None = None, *, timeout: float = 10) -> hvac.Client:
        """An hvac client on the current leader (writes then reads see their own effect)."""
        import hvac

        return hvac.Client(url=self.leader().addr, token=token or self._root_token,
                           timeout=timeout)

    # ------------------------------------------------------------------ start / stop

    def start(self) -> None:
        """Start, initialise and unseal every node; return once every node is a voter."""
        began = time.monotonic()
        if self._watchdog is None:
            self._watchdog = Watchdog()
        for node in self.nodes:
            node.write_config(self.nodes)
        for node in self.nodes:
            node.spawn(self._watchdog)
        first = self.nodes[0]
        self._wait(lambda: first.health() == 501, "node0 to listen", _START_TIMEOUT)
        init = first.request("PUT", "sys/init", {"secret_shares": 1, "secret_threshold": 1})
        if init.status != 200:
            raise ClusterError(f"sys/init answered {init.status}: {init.body.get('errors')}")
        self._unseal_key = str(init.body["keys_base64"][0])
        self._root_token = str(init.body["root_token"])
        self._unseal(first)
        self._wait(lambda: first.health() == 200, "node0 to become active", _START_TIMEOUT)
        answer = first.request(
            "POST", "sys/storage/raft/autopilot/configuration",
            {"server_stabilization_time": self._stabilization_time,
             "cleanup_dead_servers": False},
            token=self._root_token,
        )
        if answer.status >= 300:
            logger.warning("autopilot configuration refused (%d): joined nodes will take the "
                           "default 10 s to vote", answer.status)
        for node in self.nodes[1:]:
            self._unseal(node)
        self.balancer.start()
        self.active_balancer.start()
        self.wait_ready()
        self.started_in = time.monotonic() - began
        logger.info("OpenBao cluster of %d ready in %.1fs (balancer %s)", len(self.nodes),
                    self.started_in, self.addr)

    def stop(self) -> None:
        """Stop the balancer and every node. Idempotent."""
        self.balancer.stop()
        self.active_balancer.stop()
        for node in self.nodes:
            try:
                node.stop(self._watchdog)
            except Exception:
                logger.exception("error while stopping %s", node.name)
        if self._owns_watchdog and self._watchdog is not None:
            self._watchdog.close()
            self._watchdog = None

    def _unseal(self, node: ClusterNode) -> None:
        """Give *node* the unseal key once, then wait until it reports unsealed.

        A node joining through ``retry_join`` takes the key, answers "still sealed" and
        unseals in the background once it has joined (OpenBao's ``unsealWithRaft``). A second
        key sent meanwhile runs that unseal a second time: the node then has two HA loops,
        and ``sys/step-down`` on it later stays "already queued" forever (seen with OpenBao
        2.7.2 on every joined node when the key was re-sent every 0.2 s). So the key is sent
        again only after an answer that did not take it (an error, nothing listening), or
        after :data:`_UNSEAL_RESEND` seconds without progress.
        """
        end = time.monotonic() + _START_TIMEOUT
        while True:
            try:
                answer = node.request("PUT", "sys/unseal", {"key": self._unseal_key},
                                      timeout=_UNSEAL_RESEND)
                taken = answer.status == 200
            except TimeoutError:
                taken = True  # a joining node holds the answer until it has joined
            except (OSError, ValueError):
                taken = False
            if taken:
                with contextlib.suppress(ClusterError):
                    self._wait(lambda: node.health() in (200, 429), f"{node.name} to unseal",
                               max(0.1, min(_UNSEAL_RESEND, end - time.monotonic())),
                               interval=0.1)
                    return
            if time.monotonic() >= end:
                raise ClusterError(f"timed out after {_START_TIMEOUT:.0f}s waiting for "
                                   f"{node.name} to unseal\n{tail(node.log_path, 15)}")
            time.sleep(0.2)

    # ------------------------------------------------------------------ state

    def leader(self, timeout: float = 30.0) -> ClusterNode:
        """The active node (waits up to *timeout* for one, e.g. during an election)."""
        found: list[ClusterNode] = []

        def one() -> bool:
            found[:] = [n for n in self.nodes if n.health() == 200]
            return len(found) == 1

        self._wait(one, "a single active node", timeout)
        return found[0]

    def standbys(self) -> list[ClusterNode]:
        leader = self.leader()
        return [n for n in self.nodes if n is not leader]

    def raft_servers(self) -> list[dict[str, Any]]:
        """``sys/storage/raft/configuration``'s server list, asked of the leader."""
        answer = self.leader().request("GET", "sys/storage/raft/configuration",
                                       token=self._root_token, timeout=5.0)
        return list(answer.body.get("data", {}).get("config", {}).get("servers", []))

    def is_ready(self) -> bool:
        """Every node up, unsealed and answering; every node a voter; autopilot healthy."""
        statuses = [n.health() for n in self.nodes]
        if statuses.count(200) != 1 or any(s not in (200, 429) for s in statuses):
            return False
        leader = self.nodes[statuses.index(200)]
        try:
            config = leader.request("GET", "sys/storage/raft/configuration",
                                    token=self._root_token, timeout=2.0)
            state = leader.request("GET", "sys/storage/raft/autopilot/state",
                                   token=self._root_token, timeout=2.0)
        except (OSError, ValueError):
            return False
        servers = config.body.get("data", {}).get("config", {}).get("servers", [])
        voters = {s["node_id"] for s in servers if s.get("voter")}
        return voters == {n.name for n in self.nodes} and bool(
            state.body.get("data", {}).get("healthy"))

    def applied_indexes(self) -> dict[str, int]:
        """``raft_applied_index`` per answering node (from ``sys/leader``)."""
        out: dict[str, int] = {}
        for node in self.nodes:
            if node.health() is None:
                continue
            try:
                body = node.request("GET", "sys/leader", timeout=1.0).body
            except (OSError, ValueError):
                continue
            out[node.name] = int(body.get("raft_applied_index") or 0)
        return out

    def wait_replicated(self, timeout: float = 30.0) -> None:
        """Wait until every live node has applied everything the leader had committed when
        called: configuration written through the leader is then visible on every node.

        Standby nodes serve some requests themselves and lag the leader slightly; a login that
        reaches a standby right after its auth method was configured is refused there.
        """
        leader = self.leader()
        target = int(leader.request("GET", "sys/leader", timeout=5.0).body
                     .get("raft_committed_index") or 0)
        live = [n for n in self.nodes if n.health() is not None]
        self._wait(lambda: all(self.applied_indexes().get(n.name, 0) >= target for n in live),
                   f"every node to apply Raft index {target}", timeout)

    def wait_ready(self, timeout: float = _READY_TIMEOUT) -> None:
        """Wait until :meth:`is_ready` (the state every failover test starts from)."""
        self._wait(self.is_ready, "every node to be an unsealed, healthy Raft voter", timeout,
                   interval=0.2)

    def _wait(self, predicate: Any, what: str, timeout: float, interval: float = 0.05) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {n.name} ({n.log_path}):\n{tail(n.log_path, 15)}"
                                 for n in self.nodes)
                raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}\n{logs}")
            time.sleep(interval)

    # ------------------------------------------------------------------ faults

    def kill(self, node: ClusterNode) -> None:
        """SIGKILL *node* (a crash: no step-down, its connections reset)."""
        node.stop(self._watchdog, kill=True)
        logger.info("killed %s", node.name)

    def pause(self, node: ClusterNode) -> None:
        """SIGSTOP *node*: it accepts connections (the kernel does) but never answers."""
        node.signal(signal.SIGSTOP)
        node.paused = True

    def resume(self, node: ClusterNode) -> None:
        """SIGCONT after :meth:`pause`."""
        if node.paused and node.is_running:
            node.signal(signal.SIGCONT)
        node.paused = False

    def step_down(self, timeout: float = 30.0) -> ClusterNode:
        """``PUT sys/step-down`` on the leader; returns it once another node leads.

        Raft may elect the node that stepped down again (seen with OpenBao 2.7.2): then it is
        asked to step down once more, within ``timeout``.
        """
        end = time.monotonic() + timeout
        leader = self.leader()
        while True:
            answer = leader.request("PUT", "sys/step-down", token=self._root_token)
            if answer.status >= 300:
                raise ClusterError(
                    f"step-down answered {answer.status}: {answer.body.get('errors')}")
            try:
                self._wait(lambda: any(n.health() == 200 for n in self.nodes if n is not leader),
                           f"a node other than {leader.name} to lead",
                           max(1.0, min(10.0, end - time.monotonic())))
                return leader
            except ClusterError:
                if time.monotonic() >= end:
                    raise
                if self.leader() is not leader:  # an election settled on another node
                    return leader

    def restart(self, node: ClusterNode, *, wait: bool = True) -> None:
        """Stop *node* (SIGTERM; SIGKILL if already killed), start it on the same data and
        ports, unseal it; with *wait*, return once the whole cluster is ready again."""
        node.stop(self._watchdog)
        node.spawn(self._watchdog)
        self._wait(lambda: node.health() is not None, f"{node.name} to listen", _START_TIMEOUT)
        self._unseal(node)
        if wait:
            self.wait_ready()

    def roll(self) -> Iterator[ClusterNode]:
        """Restart every node in turn, standbys first and the leader last (an upgrade).

        A generator: it yields each node once it is back and the cluster is ready again, so
        a test can check its clients between steps. Exhaust it (``list(cluster.roll())``).
        """
        leader = self.leader()
        for node in [n for n in self.nodes if n is not leader] + [leader]:
            self.restart(node)
            yield node

    def heal(self) -> None:
        """Undo every fault: resume paused nodes, restart dead ones, wait until ready."""
        for node in self.nodes:
            if node.paused:
                self.resume(node)
        for node in self.nodes:
            if not node.is_running:
                self.restart(node, wait=False)
        with contextlib.suppress(ClusterError):
            self.wait_ready(timeout=30.0)
            return
        # A node that still is not healthy (sealed after a crash mid-unseal): unseal it again.
        for node in self.nodes:
            if node.health() == 503:
                self._unseal(node)
        self.wait_ready()

