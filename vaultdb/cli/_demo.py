"""``vaultdb demo``: the whole idea working on one machine in about a minute.

1. Start a real OpenBao dev server, a real PostgreSQL and a Kubernetes TokenReview stand-in
   (:mod:`vaultdb.testing`), and configure Vault as an operator would: Kubernetes auth, the
   database engine with an owner role, a least-privilege policy, short TTLs so time visibly
   passes.
2. Start N "pods" (separate processes, :mod:`vaultdb.cli._demo_pod`), each with its own
   service-account token. Each logs in with Kubernetes auth, gets its own database user and
   queries continuously through SQLAlchemy while vaultdb renews and rotates underneath.
3. After ``--duration`` seconds, SIGTERM each pod in turn and watch its users disappear from
   ``pg_roles``. Print a summary; exit 1 if anything leaked, failed or crashed.

``--db mysql`` tells the same story on a real MariaDB (``mysql-database-plugin`` on the
``mysql`` mount of the same OpenBao; pods query through PyMySQL; users watched in
``mysql.user``).

With ``--ha`` Vault is a 3-node OpenBao Raft cluster (:class:`vaultdb.testing.VaultCluster`)
behind a round-robin balancer, and the leader is SIGKILLed a third of the way through the run:
the pods ride through the election, and the summary names the leader before and after.

The view is live (rich) on a terminal and plain lines otherwise. All the state lives on the
main thread: reader threads only pass the pods' JSON lines through a queue.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import logging
import os
import queue
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from vaultdb.testing import ClusterNode, MySQLTarget, VaultCluster, VaultDBStack

__all__ = ["DemoSettings", "add_parser", "run"]

logger = logging.getLogger("vaultdb.cli.demo")

ROLE = "demo"
POLICY = "demo-app"
NAMESPACE = "demo"
SERVICE_ACCOUNT = "demo-app"
STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
RENDER_EVERY = 0.25
ROLES_EVERY = 0.3
POD_STOP_PAUSE = 0.75


@dataclass(frozen=True)
class DemoSettings:
    pods: int = 3
    duration: float = 60.0
    default_ttl: int = 5
    max_ttl: int = 12
    drain: float = 2.0
    token_ttl: int = 30
    keep: bool = False
    plain: bool = False
    db: str = "postgresql"
    ha: bool = False

    @property
    def mount(self) -> str:
        return "mysql" if self.db == "mysql" else "database"


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "demo", parents=[common],
        help="see it work: real OpenBao + PostgreSQL, three pods renewing, rotating, revoking",
        description="Start a real OpenBao, PostgreSQL and a Kubernetes TokenReview stand-in on "
        "127.0.0.1, configure them as an operator would, then run pods that each log in with "
        "their own service-account token, get their own database user and query through "
        "SQLAlchemy while vaultdb renews, rotates and finally revokes. Needs the demo extra: "
        "pip install 'vaultdb-creds[demo]'. Exit status: 0 nothing leaked or failed, 1 "
        "otherwise, 2 usage.")
    p.add_argument("--pods", type=int, default=3, help="number of pods (default 3)")
    p.add_argument("--duration", type=float, default=60.0, metavar="SECONDS",
                   help="how long the pods run once they all have credentials (default 60)")
    p.add_argument("--ttl", type=int, default=None, metavar="SECONDS",
                   help="the database role's default_ttl (default 5, 20 with --ha)")
    p.add_argument("--max-ttl", type=int, default=None, metavar="SECONDS",
                   help="the database role's max_ttl (default 12, 60 with --ha)")
    p.add_argument("--drain", type=float, default=2.0, metavar="SECONDS",
                   help="how long rotated-out credentials stay valid (default 2)")
    p.add_argument("--keep", action="store_true",
                   help="leave the stack running afterwards and print how to reach it")
    p.add_argument("--plain", action="store_true",
                   help="line-by-line output even on a terminal")
    p.add_argument("--db", choices=("postgresql", "mysql"), default="postgresql",
                   help="the database the pods use: PostgreSQL (default) or MariaDB (needs an "
                   "installed mariadbd, e.g. apt-get install mariadb-server)")
    p.add_argument("--ha", action="store_true",
                   help="Vault is a 3-node OpenBao Raft cluster behind a load balancer; its "
                   "leader is killed (SIGKILL) a third of the way through the run")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # A leader election takes about 5 s (more on a busy machine): with --ha the last third of
    # a lease, what is left when its renewal is due, outlives it.
    if args.ttl is None:
        args.ttl = 20 if args.ha else 5
    if args.max_ttl is None:
        args.max_ttl = max(args.ttl, 60 if args.ha else 12)
    if args.pods < 1 or args.duration < 0 or args.ttl < 1 or args.max_ttl < args.ttl:
        print("vaultdb demo: error: need --pods >= 1, --duration >= 0 and "
              "1 <= --ttl <= --max-ttl", file=sys.stderr)
        return 2
    settings = DemoSettings(pods=args.pods, duration=args.duration, default_ttl=args.ttl,
                            max_ttl=args.max_ttl, drain=args.drain, keep=args.keep,
                            plain=args.plain, db=args.db, ha=args.ha)
    return Demo(settings, _make_view(settings.plain)).run()


# -- output ---------------------------------------------------------------------------------


class View(Protocol):
    def start(self) -> None: ...

    def log(self, elapsed: float, who: str, text: str) -> None: ...

    def render(self, demo: Demo) -> None: ...

    def stop(self) -> None: ...

    def say(self, text: str = "") -> None: ...


class PlainView:
    """One line per event, flushed, and a status line per pod every few seconds: for pipes,
    CI logs and ``kubectl logs``."""

    STATUS_EVERY = 10.0

    def __init__(self) -> None:
        self._next_status = time.monotonic() + self.STATUS_EVERY

    def start(self) -> None:
        pass

    def log(self, elapsed: float, who: str, text: str) -> None:
        print(f"{elapsed:6.1f}s  {who:<9} {text}", flush=True)

    def render(self, demo: Demo) -> None:
        if demo.phase != "running" or time.monotonic() < self._next_status:
            return
        self._next_status = time.monotonic() + self.STATUS_EVERY
        for pod in demo.pods:
            st = pod.stats
            lease = st.get("lease_left")
            self.log(demo.elapsed, pod.name, "status: user {} generation {} lease {} renewals {} "
                     "rotations {} queries {} failed {}".format(
                         st.get("session_user") or "-", st.get("generation") or "-",
                         f"{lease:.1f}s left" if isinstance(lease, (int, float)) else "-",
                         st.get("renewals", 0), st.get("rotations", 0), st.get("queries", 0),
                         st.get("failed", 0)))

    def stop(self) -> None:
        pass

    def say(self, text: str = "") -> None:
        print(text, flush=True)


def _make_view(plain: bool) -> View:
    if plain or not sys.stdout.isatty():
        return PlainView()
    try:
        from ._demo_view import RichView
    except ImportError:
        return PlainView()
    return RichView()


# -- state ----------------------------------------------------------------------------------


@dataclass
class Pod:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    stats: dict[str, Any] = field(default_factory=dict)
    state: str = "starting"
    issued: int = 0
    revoked: int = 0
    users: list[str] = field(default_factory=list)
    fatal: str | None = None
    exit_code: int | None = None
    sigterm_at: float | None = None

    @property
    def ready(self) -> bool:
        return bool(self.users) or self.fatal is not None or self.exit_code is not None


@dataclass
class HaFailover:
    """``--ha``: who led, when the leader was killed and who took over."""

    before: str | None = None
    after: str | None = None
    killed: ClusterNode | None = None
    killed_at: float = 0.0
    elected_in: float = 0.0
    next_poll: float = 0.0


def _active(cluster: VaultCluster) -> ClusterNode | None:
    return next((n for n in cluster.nodes if n.health() == 200), None)


def _past(limit: float) -> bool:
    return time.monotonic() > limit


def _exited_or_late(pod: Pod, limit: float) -> bool:
    return pod.exit_code is not None or time.monotonic() > limit


@dataclass
class Summary:
    issued: int
    renewed: int
    rotated: int
    revoked: int
    leaked: int
    failed_queries: int
    queries: int
    crashed: int
    leftover_users: list[str]
    leftover_leases: int
    leader_before: str | None = None
    leader_after: str | None = None
    #: ``--ha``: a new leader was elected after the kill (always true without ``--ha``).
    failed_over: bool = True

    @property
    def ok(self) -> bool:
        return (self.leaked == 0 and self.failed_queries == 0 and self.crashed == 0
                and self.issued > 0 and self.failed_over)


class Demo:
    def __init__(self, settings: DemoSettings, view: View) -> None:
        self.settings = settings
        self.view = view
        self.stack: VaultDBStack | None = None
        self.mysql: MySQLTarget | None = None
        #: Where the demo watches database users: PostgreSQL's pg_roles or MySQL's mysql.user.
        self.users_table = "mysql.user" if settings.db == "mysql" else "pg_roles"
        self.pods: list[Pod] = []
        self.inbox: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self.began = time.monotonic()
        self.run_started: float | None = None
        self.phase = "starting"
        self.roles: dict[str, int] = {}  # demo users in the users table -> open sessions
        self.owner: dict[str, str] = {}  # user -> pod name
        self.gone: list[str] = []  # users seen in the users table and later dropped
        self.recent: list[str] = []
        self.interrupts = 0
        self.summary: Summary | None = None
        self.cluster: VaultCluster | None = None
        self.failover = HaFailover()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.began

    @property
    def run_elapsed(self) -> float:
        return 0.0 if self.run_started is None else time.monotonic() - self.run_started

    def log(self, who: str, text: str) -> None:
        self.recent = [*self.recent[-11:], f"{self.elapsed:6.1f}s  {who:<9} {text}"]
        self.view.log(self.elapsed, who, text)

    # -- signals ----------------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.interrupts += 1
        if self.interrupts > 1:
            raise KeyboardInterrupt

    # -- the run ----------------------------------------------------------------------------

    def run(self) -> int:
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            stack = self._start_stack()
            if stack is None:
                return 1
            self.stack = stack
            try:
                self._configure(stack)
                if self.cluster is not None:
                    # As in production, pods start after the configuration reached every node.
                    self.cluster.wait_replicated()
                self._launch_pods(stack)
                self.view.start()
                try:
                    self._run_phase()
                    self._shutdown_phase()
                finally:
                    self.view.stop()
                summary = self.summary = self._summarise(stack)
                self._print_summary(summary)
                if self.settings.keep:
                    self._keep(stack)
                return 0 if summary.ok else 1
            finally:
                self._kill_pods()
                if self.mysql is not None:
                    self.mysql.close()
                stack.close()
                self._stop_cluster()
        except KeyboardInterrupt:
            self.view.stop()
            self.view.say("vaultdb demo: interrupted; stack stopped")
            return 130
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _start_stack(self) -> VaultDBStack | None:
        s = self.settings
        self.view.say(f"vaultdb demo: {s.pods} pod(s) for {s.duration:.0f}s; database role "
                      f"{ROLE!r} with default_ttl {s.default_ttl}s, max_ttl {s.max_ttl}s; "
                      f"drain {s.drain:g}s")
        vault = ("a 3-node OpenBao Raft cluster behind a round-robin balancer" if s.ha
                 else "OpenBao (dev server)")
        self.view.say(f"Starting {vault}, PostgreSQL and a Kubernetes TokenReview "
                      "stand-in on 127.0.0.1 ...")
        try:
            from vaultdb.testing import VaultDBStack

            stack = VaultDBStack.start(vault=self._start_cluster()) if s.ha else \
                VaultDBStack.start()
        except ImportError as exc:
            self.view.say(f"vaultdb demo: error: {exc}")
            self.view.say("hint: install the demo extra: pip install 'vaultdb-creds[demo]'")
            self._stop_cluster()
            return None
        except Exception as exc:
            self.view.say(f"vaultdb demo: error: could not start the stack: {exc}")
            self.view.say("hint: run with -v for the servers' logs")
            self._stop_cluster()
            return None
        if self.cluster is not None:
            leader = self.cluster.leader()
            self.failover.before = leader.name
            self.view.say(f"  cluster ready in {self.cluster.started_in or 0:.1f}s: "
                          + ", ".join(f"{n.name} {n.addr}" for n in self.cluster.nodes)
                          + f"; leader {leader.name}; pods use the active-only balancer "
                          f"{self.cluster.active_addr}")
        self.view.say(f"  ready in {stack.started_in or 0:.1f}s: OpenBao {stack.vault_addr}, "
                      f"PostgreSQL {stack.postgres.host}:{stack.postgres.port}/"
                      f"{stack.postgres.database}, TokenReview {stack.kube.url}")
        if s.db == "mysql":
            self.view.say("Starting MariaDB on 127.0.0.1 ...")
            try:
                from vaultdb.testing import MySQLTarget

                self.mysql = MySQLTarget.start(stack)
            except Exception as exc:
                stack.close()
                self.view.say(f"vaultdb demo: error: could not start MariaDB: {exc}")
                self.view.say("hint: install a MariaDB server (apt-get install mariadb-server) "
                              "or set VAULTDB_MARIADB_BIN")
                return None
            my = self.mysql.server
            self.view.say(f"  MariaDB {my.host}:{my.port}/{my.database}")
        return stack

    def _start_cluster(self) -> VaultCluster:
        import tempfile

        from vaultdb.testing import VaultCluster

        self.cluster = VaultCluster(Path(tempfile.mkdtemp(prefix="vaultdb-demo-cluster-")))
        self.cluster.start()
        return self.cluster

    def _stop_cluster(self) -> None:
        import shutil

        cluster, self.cluster = self.cluster, None
        if cluster is not None:
            cluster.stop()
            shutil.rmtree(cluster.workdir, ignore_errors=True)

    def _ha_step(self) -> None:
        """Kill the leader a third of the way through the run; then watch for the next one."""
        cluster, f = self.cluster, self.failover
        if cluster is None or self.run_started is None or f.after is not None:
            return
        if f.killed is None and self.run_elapsed >= self.settings.duration / 3:
            leader = _active(cluster)
            if leader is None:
                return
            f.before, f.killed = leader.name, leader
            f.killed_at = time.monotonic()
            self.log("vault", f"SIGKILL the leader {leader.name} ({leader.addr})")
            cluster.kill(leader)
        elif f.killed is not None and time.monotonic() >= f.next_poll:
            f.next_poll = time.monotonic() + 0.25
            leader = _active(cluster)
            if leader is not None and leader is not f.killed:
                f.after = leader.name
                f.elected_in = time.monotonic() - f.killed_at
                self.log("vault", f"{leader.name} is the new leader ({f.elected_in:.1f}s after "
                         "the kill)")

    def _configure(self, stack: VaultDBStack) -> None:
        s = self.settings
        hcl = (f'path "{s.mount}/creds/{ROLE}" {{ capabilities = ["read"] }}\n'
               'path "sys/leases/renew" { capabilities = ["update"] }\n'
               'path "sys/leases/revoke" { capabilities = ["update"] }\n')
        if self.mysql is not None:
            self.mysql.create_role(ROLE, default_ttl=s.default_ttl, max_ttl=s.max_ttl)
        else:
            stack.create_database_role(ROLE, default_ttl=s.default_ttl, max_ttl=s.max_ttl)
        stack.write_policy(POLICY, hcl)
        stack.create_kubernetes_role(ROLE, service_account=SERVICE_ACCOUNT, namespace=NAMESPACE,
                                     policies=(POLICY,), token_ttl=s.token_ttl)
        say = self.view.say
        say("Vault configured as an operator would (bao CLI equivalent):")
        say(f"  bao secrets enable -path={s.mount} database")
        if self.mysql is not None:
            my = self.mysql.server
            say(f"  bao write mysql/config/{self.mysql.connection} "
                "plugin_name=mysql-database-plugin connection_url='{{username}}:{{password}}"
                f"@tcp({my.host}:{my.port})/' allowed_roles='*' ...")
            say(f"  bao write mysql/roles/{ROLE} db_name={self.mysql.connection} "
                f"default_ttl={s.default_ttl}s max_ttl={s.max_ttl}s creation_statements=\""
                f"CREATE USER ...; GRANT ALL PRIVILEGES ON {my.database}.* ...\" "
                "revocation_statements=\"DROP USER ...; KILL USER ...\"")
        else:
            pg = stack.postgres
            say(f"  bao write database/config/postgres plugin_name=postgresql-database-plugin "
                f"connection_url='postgresql://{{{{username}}}}:{{{{password}}}}@{pg.host}:"
                f"{pg.port}/{pg.database}' allowed_roles='*' ...")
            say(f"  bao write database/roles/{ROLE} db_name=postgres "
                f"default_ttl={s.default_ttl}s max_ttl={s.max_ttl}s creation_statements=\""
                f"CREATE ROLE ... IN ROLE {pg.owner_role}; ALTER ROLE ... SET role = "
                f"'{pg.owner_role}'; GRANT CONNECT ...\"")
        say(f"  bao policy write {POLICY} -   # read {s.mount}/creds/{ROLE}; update "
            "sys/leases/renew, sys/leases/revoke")
        say(f"  bao auth enable kubernetes && bao write auth/kubernetes/config "
            f"kubernetes_host={stack.kube.url} ...")
        say(f"  bao write auth/kubernetes/role/{ROLE} bound_service_account_names="
            f"{SERVICE_ACCOUNT} bound_service_account_namespaces={NAMESPACE} "
            f"token_policies={POLICY} token_ttl={s.token_ttl}s")

    def _pod_env(self, stack: VaultDBStack, name: str, token_path: Path) -> dict[str, str]:
        base = {k: v for k, v in stack.env().items()
                if not k.startswith(("VAULTDB_", "VAULT_", "BAO_"))}
        pg = stack.postgres
        url = f"postgresql+psycopg://{pg.host}:{pg.port}/{pg.database}"
        if self.mysql is not None:
            my = self.mysql.server
            url = f"mysql+pymysql://{my.host}:{my.port}/{my.database}"
        return {
            **base,
            "VAULT_ADDR": self._pod_vault_addr(stack),
            "VAULTDB_MOUNT": self.settings.mount,
            "VAULTDB_ROLE": ROLE,
            "VAULTDB_AUTH_METHOD": "kubernetes",
            "VAULTDB_AUTH_ROLE": ROLE,
            "VAULTDB_TOKEN_PATH": str(token_path),
            "VAULTDB_DRAIN_SECONDS": f"{self.settings.drain:g}",
            "VAULTDB_DEMO_POD": name,
            "VAULTDB_DEMO_DB_URL": url,
            "PYTHONUNBUFFERED": "1",
        }

    def _pod_vault_addr(self, stack: VaultDBStack) -> str:
        # OpenBao 2.7 refuses Kubernetes-auth logins on standby nodes (403 "permission
        # denied") for about 30 s after auth/kubernetes/config was written, which is just
        # before the pods start: they use the active-only Service (the Helm chart's
        # vault-active).
        return self.cluster.active_addr if self.cluster is not None else stack.vault_addr

    def _launch_pods(self, stack: VaultDBStack) -> None:
        pods_dir = stack.workdir / "pods"
        pods_dir.mkdir(exist_ok=True)
        self.view.say(f"Starting {self.settings.pods} pod(s): each is a separate process with "
                      f"its own service-account token ({NAMESPACE}/{SERVICE_ACCOUNT}), logging "
                      "in with Kubernetes auth and querying through SQLAlchemy.")
        for i in range(1, self.settings.pods + 1):
            name = f"pod-{i}"
            token = stack.write_service_account_token(
                pods_dir / name / "token", service_account=SERVICE_ACCOUNT,
                namespace=NAMESPACE, pod_name=f"{SERVICE_ACCOUNT}-{i}", ttl=3600)
            log_path = pods_dir / f"{name}.log"
            with open(log_path, "wb") as log_file:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "vaultdb.cli._demo_pod"],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log_file,
                    env=self._pod_env(stack, name, token), start_new_session=True)
            pod = Pod(name, proc, log_path)
            self.pods.append(pod)
            threading.Thread(target=self._read_pod, args=(pod,), name=f"demo-{name}-reader",
                             daemon=True).start()

    def _read_pod(self, pod: Pod) -> None:
        assert pod.proc.stdout is not None
        for raw in pod.proc.stdout:
            try:
                message = json.loads(raw)
            except ValueError:
                continue
            if isinstance(message, dict):
                self.inbox.put((pod.name, message))
        self.inbox.put((pod.name, {"type": "eof"}))

    def _pump(self, wait: float) -> None:
        """Handle what the pods said, poll pg_roles and the processes, render."""
        end = time.monotonic() + wait
        while True:
            try:
                name, message = self.inbox.get(timeout=max(0.0, min(0.05, end - time.monotonic())))
                self._handle(name, message)
            except queue.Empty:
                pass
            if time.monotonic() >= end:
                break
        for pod in self.pods:
            code = pod.proc.poll()
            if code is not None and pod.exit_code is None:
                pod.exit_code = code
                if pod.sigterm_at is None or code != 0:
                    pod.state = "crashed"
                    self.log(pod.name, f"exited with status {code} "
                             f"(log: {pod.log_path})")
                else:
                    pod.state = "exited"
                    self.log(pod.name, "exited (status 0)")

    def _handle(self, name: str, m: dict[str, Any]) -> None:
        pod = next(p for p in self.pods if p.name == name)
        kind = m.get("type")
        if kind == "stats":
            pod.stats = m
            if pod.state in ("starting", "running") and m.get("state") == "running":
                pod.state = "running"
            return
        if kind == "fatal":
            pod.fatal = str(m.get("message"))
            self.log(name, f"FATAL {pod.fatal} hint: {m.get('hint')}")
            return
        if kind != "event":
            return
        event, user = m.get("kind"), str(m.get("user"))
        if event in ("created", "rotated"):
            pod.issued += 1
            pod.users.append(user)
            self.owner[user] = name
        if event == "created":
            self.log(name, f"got database user {user} (generation {m.get('generation')}, "
                     f"lease {m.get('ttl', 0):.0f}s)")
        elif event == "rotated":
            self.log(name, f"rotated {m.get('previous')} -> {user} (generation "
                     f"{m.get('generation')}): {m.get('reason')}")
        elif event == "renewed":
            self.log(name, f"renewed the lease of {user} ({m.get('ttl', 0):.0f}s)")
        elif event == "revoked":
            pod.revoked += 1
            self.log(name, f"revoked {user}")
        elif event == "expired":
            self.log(name, f"CREDENTIALS EXPIRED: {user}")
        elif event == "error":
            self.log(name, f"error: {m.get('message')}")
        elif event == "login":
            self.log(name, f"logged in to Vault ({m.get('method')} auth, service account "
                     f"{NAMESPACE}/{SERVICE_ACCOUNT})")
        elif event == "login-renewed":
            self.log(name, f"renewed its Vault login token ({m.get('ttl', 0):.0f}s)")

    def _poll_roles(self) -> None:
        assert self.stack is not None
        try:
            if self.mysql is not None:
                rows = self.mysql.server.sql(
                    "SELECT u.User, (SELECT count(*) FROM information_schema.PROCESSLIST p "
                    "WHERE p.USER = u.User) FROM mysql.user u WHERE u.User LIKE %s",
                    (f"v-%-{ROLE}-%",))
            else:
                rows = self.stack.sql(
                    "SELECT r.rolname, count(a.pid) FROM pg_roles r LEFT JOIN pg_stat_activity "
                    "a ON a.usename = r.rolname WHERE r.rolname LIKE %s GROUP BY r.rolname",
                    (f"v-%-{ROLE}-%",))
        except Exception as exc:
            logger.debug("%s poll failed: %s", self.users_table, exc)
            return
        now = {str(u): int(n) for u, n in rows}
        for user in sorted(set(now) - set(self.roles)):
            self.log(self.users_table, f"+ {user}")
        for user in sorted(set(self.roles) - set(now)):
            self.gone.append(user)
            self.log(self.users_table, f"- {user} (dropped)")
        self.roles = now

    def _loop(self, until: Callable[[], bool]) -> None:
        next_roles = next_render = 0.0
        while not until():
            self._pump(0.05)
            now = time.monotonic()
            if now >= next_roles:
                self._poll_roles()
                next_roles = now + ROLES_EVERY
            if now >= next_render:
                self.view.render(self)
                next_render = now + RENDER_EVERY
            self._ha_step()

    def _run_phase(self) -> None:
        self.phase = "pods starting"
        deadline = time.monotonic() + STARTUP_TIMEOUT
        self._loop(lambda: self.interrupts > 0 or time.monotonic() > deadline
                   or all(p.ready for p in self.pods))
        if not all(p.ready for p in self.pods) and self.interrupts == 0:
            self.log("demo", f"some pods got no credentials within {STARTUP_TIMEOUT:.0f}s")
        self.run_started = time.monotonic()
        self.phase = "running"
        self.log("demo", f"all pods have credentials; running for {self.settings.duration:.0f}s")
        self._loop(lambda: self.interrupts > 0 or self.run_elapsed >= self.settings.duration
                   or all(p.exit_code is not None for p in self.pods))

    def _shutdown_phase(self) -> None:
        self.phase = "stopping"
        self.log("demo", "stopping the pods one by one with SIGTERM (as Kubernetes does)")
        for pod in self.pods:
            if pod.proc.poll() is not None:
                continue
            pod.sigterm_at = time.monotonic()
            pod.state = "SIGTERM"
            self.log(pod.name, "SIGTERM")
            with contextlib.suppress(ProcessLookupError):
                pod.proc.send_signal(signal.SIGTERM)
            self._loop(functools.partial(_exited_or_late, pod, time.monotonic() + STOP_TIMEOUT))
            if pod.exit_code is None:
                self.log(pod.name, f"did not exit within {STOP_TIMEOUT:.0f}s: SIGKILL")
                pod.proc.kill()
                pod.proc.wait()
            # A moment to see the user leave the users table before the next pod goes.
            self._loop(functools.partial(_past, time.monotonic() + POD_STOP_PAUSE))
        # Let the readers deliver the last lines, and the users table show the final state.
        self._loop(functools.partial(_past, time.monotonic() + 1.0))
        self.phase = "done"
        self.view.render(self)

    def _summarise(self, stack: VaultDBStack) -> Summary:
        self._poll_roles()
        leftover = sorted(self.roles)
        leases = 0
        try:
            listed = stack.root_client().sys.list_leases(
                prefix=f"{self.settings.mount}/creds/{ROLE}/")
            leases = len(listed.get("data", {}).get("keys", []))
        except Exception:  # 404: no lease left under the prefix
            leases = 0
        stats = [p.stats for p in self.pods]
        return Summary(
            issued=sum(p.issued for p in self.pods),
            renewed=sum(int(s.get("renewals") or 0) for s in stats),
            rotated=sum(int(s.get("rotations") or 0) for s in stats),
            revoked=sum(p.revoked for p in self.pods),
            leaked=max(len(leftover), leases),
            failed_queries=sum(int(s.get("failed") or 0) for s in stats),
            queries=sum(int(s.get("queries") or 0) for s in stats),
            crashed=sum(p.state == "crashed" or p.fatal is not None for p in self.pods),
            leftover_users=leftover, leftover_leases=leases,
            leader_before=self.failover.before, leader_after=self.failover.after,
            failed_over=not self.settings.ha or self.failover.after is not None)

    def _print_summary(self, s: Summary) -> None:
        say = self.view.say
        say("")
        say(f"Summary: issued {s.issued}, renewed {s.renewed}, rotated {s.rotated}, "
            f"revoked {s.revoked}, leaked {s.leaked}, failed queries {s.failed_queries} "
            f"({s.queries} queries by {len(self.pods)} pod(s) in {self.run_elapsed:.0f}s)")
        if self.settings.ha:
            f = self.failover
            if f.after is not None:
                say(f"Vault leader: {s.leader_before} before, {s.leader_after} after the "
                    f"SIGKILL (new leader elected in {f.elected_in:.1f}s)")
            else:
                say(f"Vault leader: {s.leader_before}; "
                    + ("no new leader was seen after the SIGKILL" if f.killed is not None
                       else "the run ended before the leader was killed (use a longer "
                       "--duration)"))
        if s.leftover_users:
            say(f"  still in {self.users_table}: {', '.join(s.leftover_users)}")
        if s.leftover_leases:
            say(f"  leases still in Vault under {self.settings.mount}/creds/{ROLE}: "
                f"{s.leftover_leases}")
        for pod in self.pods:
            if pod.state == "crashed" or pod.fatal:
                say(f"  {pod.name} crashed (status {pod.exit_code}); its log: {pod.log_path}")
                if not self.settings.keep:
                    with contextlib.suppress(OSError):
                        tail = pod.log_path.read_text(errors="replace").splitlines()[-15:]
                        for line in tail:
                            say(f"    {line}")
        say("Result: OK, every database user was revoked and no query failed" if s.ok
            else "Result: FAILED")

    def _keep(self, stack: VaultDBStack) -> None:
        from vaultdb.testing._openbao import find_bao_binary

        pg = stack.postgres
        token = stack.write_service_account_token(
            stack.workdir / "pods" / "you" / "token", service_account=SERVICE_ACCOUNT,
            namespace=NAMESPACE, pod_name=f"{SERVICE_ACCOUNT}-you", ttl=86400)
        path_dirs = [str(Path(find_bao_binary()).parent), str(pg.pg_bin)]
        env = {
            "VAULT_ADDR": stack.vault_addr, "BAO_ADDR": stack.vault_addr,
            "VAULT_TOKEN": stack.root_token,  # for the bao CLI (operator)
            "VAULTDB_MOUNT": self.settings.mount,
            "VAULTDB_ROLE": ROLE, "VAULTDB_AUTH_METHOD": "kubernetes",
            "VAULTDB_AUTH_ROLE": ROLE, "VAULTDB_TOKEN_PATH": str(token),
            "VAULTDB_DRAIN_SECONDS": f"{self.settings.drain:g}",
            "PGHOST": pg.host, "PGPORT": str(pg.port), "PGDATABASE": pg.database,
        }
        if self.mysql is not None:
            my = self.mysql.server
            env.update(MYSQL_HOST=my.host, MYSQL_TCP_PORT=str(my.port),
                       MYSQL_DATABASE=my.database)
        env_file = stack.workdir / "env.sh"
        fd = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("# vaultdb demo stack (dev only: VAULT_TOKEN is the dev server's root)\n")
            fh.writelines(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())
            fh.write(f"export PATH={shlex.quote(':'.join(path_dirs))}:\"$PATH\"\n")
        say = self.view.say
        say("")
        say("The stack is still running (--keep). In another shell:")
        say(f"  source {env_file}")
        if self.mysql is not None:
            my = self.mysql.server
            # The mariadb client reads MYSQL_HOST, MYSQL_TCP_PORT and MYSQL_PWD.
            say("  vaultdb exec --user-var MYSQL_USER --password-var MYSQL_PWD -- "
                "sh -c 'mariadb -u \"$MYSQL_USER\" -e \"select user()\" \"$MYSQL_DATABASE\"'")
            where = f"MariaDB {my.host}:{my.port}/{my.database}"
        else:
            say(f"  vaultdb check --dsn postgresql://{pg.host}:{pg.port}/{pg.database}")
            say("  vaultdb exec -- psql -c 'select session_user, current_user'")
            where = f"PostgreSQL {pg.host}:{pg.port}/{pg.database}"
        say(f"  bao read {self.settings.mount}/creds/{ROLE}          # as the operator (root "
            "token)")
        say(f"OpenBao {stack.vault_addr} | {where} | "
            f"TokenReview {stack.kube.url} | files in {stack.workdir}")
        say("Press Ctrl-C to stop the stack.")
        self.interrupts = 0
        while self.interrupts == 0:
            time.sleep(0.2)
        say("stopping the stack")

    def _kill_pods(self) -> None:
        for pod in self.pods:
            if pod.proc.poll() is None:
                pod.proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    pod.proc.wait(timeout=5)
            if pod.proc.stdin is not None:
                with contextlib.suppress(OSError):
                    pod.proc.stdin.close()
