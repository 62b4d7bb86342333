"""``vaultdb exec`` as a subprocess around real child processes, against the real stack."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

from clitools import App, Background, free_port_url, python_child, run_cli

from vaultdb.testing import FaultProxy, wait_for

# A child that uses the exported credentials the way libpq tools do (PGUSER/PGPASSWORD plus
# the stack's PGHOST/PGPORT/PGDATABASE), reports session_user, and handles signals.
WORKER = """
import os, signal, sys, time
import psycopg

got = []
for name in ("SIGTERM", "SIGUSR1", "SIGHUP"):
    signal.signal(getattr(signal, name), lambda s, f: got.append(signal.Signals(s).name))

def session_user(**kw):
    with psycopg.connect(connect_timeout=5, **kw) as conn:
        return conn.execute("select session_user").fetchone()[0]

print(f"start pid={os.getpid()} user={os.environ['PGUSER']} session={session_user()}", flush=True)
print(f"vault_token={'VAULT_TOKEN' in os.environ}", flush=True)
while True:
    while got:
        name = got.pop(0)
        print(f"got {name}", flush=True)
        if name == "SIGTERM":
            sys.exit(int(os.environ.get("EXIT_ON_TERM", "0")))
        if name == "SIGHUP" and os.environ.get("RELOAD_FILE"):
            values = dict(line.strip().split("=", 1) for line in open(os.environ["RELOAD_FILE"]))
            user, password = values["PGUSER"].strip("'"), values["PGPASSWORD"].strip("'")
            print(f"reloaded pid={os.getpid()} user={user} "
                  f"session={session_user(user=user, password=password)}", flush=True)
    time.sleep(0.05)
"""


def test_exports_credentials_and_exits_with_the_child_status(app: App, tmp_path: Path) -> None:
    child = python_child(tmp_path, "once.py", """
import os, sys, psycopg
with psycopg.connect(connect_timeout=5) as conn:
    print("user", os.environ["PGUSER"], conn.execute("select session_user").fetchone()[0])
print("vault_token", "VAULT_TOKEN" in os.environ)
sys.exit(7)
""")
    result = run_cli(["exec", "-vv", "--", *child], app.env(VAULT_TOKEN="s.not-for-the-child"))
    assert result.returncode == 7, result.stderr
    _, user, session = next(li for li in result.stdout.splitlines() if li.startswith("user ")
                            ).split()
    assert user == session and f"-{app.role[:8]}-" in user
    assert "vault_token False" in result.stdout
    assert app.users() == set()  # revoked before exec exited
    app.assert_no_secret_in(result.stdout, result.stderr)


def test_url_template(app: App, tmp_path: Path) -> None:
    pg = app.stack.postgres
    child = python_child(tmp_path, "url.py", """
import os, psycopg
assert "PGUSER" not in os.environ and "PGPASSWORD" not in os.environ
with psycopg.connect(os.environ["APP_DB"], connect_timeout=5) as conn:
    print("session", conn.execute("select session_user").fetchone()[0])
""")
    template = f"postgresql://{{username}}:{{password}}@{pg.host}:{pg.port}/{pg.database}"
    result = run_cli(["exec", "--user-var", "", "--password-var", "", "--url-template", template,
                      "--url-var", "APP_DB", "--", *child], app.env())
    assert result.returncode == 0, result.stderr
    assert f"-{app.role[:8]}-" in result.stdout
    assert app.users() == set()


def test_restarts_the_child_on_rotation_and_revokes(make_app: Callable[..., App],
                                                    tmp_path: Path) -> None:
    app = make_app(default_ttl=4, max_ttl=10)
    proc = Background(["exec", "-v", "--grace", "5", "--", *python_child(
        tmp_path, "worker.py", WORKER)], app.env())
    try:
        starts = proc.wait_for(r"start pid=(\d+) user=(\S+) session=(\S+)", count=2, timeout=60)
        (pid1, user1, session1), (pid2, user2, session2) = (m.groups() for m in starts[:2])
        assert pid1 != pid2 and user1 != user2
        assert (user1, user2) == (session1, session2)
        proc.wait_for(r"got SIGTERM")  # the first child was stopped gracefully
        proc.wait_for("restarting the command")
        assert "expired" not in proc.output  # rotated while the old credentials still worked
        wait_for(lambda: user1 not in app.users(), timeout=30)  # retired user revoked
        proc.signal(signal.SIGTERM)
        assert proc.finish() == 0
    finally:
        proc.kill()
    assert app.users() == set()
    app.assert_no_secret_in(proc.output)


def test_signals_the_child_on_rotation_with_an_env_file(make_app: Callable[..., App],
                                                       tmp_path: Path) -> None:
    app = make_app(default_ttl=4, max_ttl=10)
    env_file = tmp_path / "db.env"
    proc = Background(["exec", "--on-rotate", "SIGHUP", "--env-file", str(env_file), "--",
                       *python_child(tmp_path, "worker.py", WORKER)],
                      app.env(RELOAD_FILE=str(env_file)))
    try:
        (start,) = proc.wait_for(r"start pid=(\d+) user=(\S+)")
        (reload,) = proc.wait_for(r"reloaded pid=(\d+) user=(\S+) session=(\S+)", timeout=60)
        assert reload.group(1) == start.group(1)  # same process, not restarted
        assert reload.group(2) != start.group(2) and reload.group(2) == reload.group(3)
        assert oct(env_file.stat().st_mode & 0o777) == "0o600"
        proc.signal(signal.SIGTERM)
        assert proc.finish() == 0
    finally:
        proc.kill()
    assert not env_file.exists()
    assert app.users() == set()
    app.assert_no_secret_in(proc.output)


def test_forwards_signals_and_returns_the_child_status(app: App, tmp_path: Path) -> None:
    proc = Background(["exec", "--", *python_child(tmp_path, "worker.py", WORKER)],
                      app.env(EXIT_ON_TERM="3"))
    try:
        proc.wait_for(r"start pid=")
        proc.signal(signal.SIGUSR1)
        proc.wait_for(r"got SIGUSR1")
        assert proc.proc.poll() is None
        proc.signal(signal.SIGTERM)
        proc.wait_for(r"got SIGTERM")
        assert proc.finish() == 3
    finally:
        proc.kill()
    assert app.users() == set()


def test_child_killed_by_a_signal(app: App, tmp_path: Path) -> None:
    child = python_child(tmp_path, "die.py", "import os, signal\nos.kill(os.getpid(), 9)\n")
    result = run_cli(["exec", "--", *child], app.env())
    assert result.returncode == 128 + 9
    assert app.users() == set()


def test_command_not_found_revokes_and_exits_127(app: App) -> None:
    result = run_cli(["exec", "--", "no-such-command-vaultdb"], app.env())
    assert result.returncode == 127
    assert "command not found" in result.stderr
    assert app.users() == set()


def test_vault_unreachable_exits_125_with_hint(app: App) -> None:
    result = run_cli(["exec", "--", "true"],
                     app.env(VAULT_ADDR=free_port_url(), VAULTDB_FETCH_TIMEOUT="2"))
    assert result.returncode == 125
    assert "hint: Check VAULT_ADDR" in result.stderr


def test_usage_errors(app: App) -> None:
    assert run_cli(["exec"], app.env()).returncode == 2
    bad = run_cli(["exec", "--url-template", "postgresql://{user}@db/app", "--", "true"],
                  app.env())
    assert bad.returncode == 2 and "{username}" in bad.stderr
    assert run_cli(["exec", "--on-rotate", "SIGNOPE", "--", "true"], app.env()).returncode == 2


def test_psql(app: App) -> None:
    psql = app.stack.postgres.pg_bin / "psql"
    result = run_cli(["exec", "--", str(psql), "-Atc", "select session_user, current_user"],
                     app.env())
    assert result.returncode == 0, result.stderr
    session, current = result.stdout.strip().split("|")
    assert f"-{app.role[:8]}-" in session and current == "app_owner"
    assert app.users() == set()


SHOW_ENV = """
import os
for name in sorted(os.environ):
    if name.startswith(("VAULT", "BAO_", "PG")):
        print("env", name, flush=True)
"""


def test_the_command_gets_no_login_secret_and_nothing_else_is_removed(
        app: App, tmp_path: Path) -> None:
    role_id, secret_id = app.stack.create_approle(f"{app.role}-ar")
    token = app.stack.create_token()
    env = app.env(VAULTDB_AUTH_METHOD="approle", VAULTDB_ROLE_ID=role_id,
                  VAULTDB_SECRET_ID=secret_id, VAULT_TOKEN=token, BAO_TOKEN=token,
                  VAULTDB_SECRET_ID_PATH="", VAULT_NAMESPACE="", VAULTDB_MOUNT="database")
    result = run_cli(["exec", "--", *python_child(tmp_path, "env.py", SHOW_ENV)], env)
    assert result.returncode == 0, result.stderr
    seen = {line.split()[1] for line in result.stdout.splitlines() if line.startswith("env ")}
    assert not seen & {"VAULT_TOKEN", "BAO_TOKEN", "VAULTDB_ROLE_ID", "VAULTDB_SECRET_ID"}
    expected = {k for k in env if k.startswith(("VAULT", "BAO_", "PG"))}
    expected -= {"VAULT_TOKEN", "BAO_TOKEN", "VAULTDB_ROLE_ID", "VAULTDB_SECRET_ID"}
    assert seen == expected | {"PGUSER", "PGPASSWORD"}
    for secret in (role_id, secret_id, token):
        assert secret not in result.stdout + result.stderr
    assert app.users() == set()


def test_a_token_with_a_trailing_newline_works(app: App, tmp_path: Path) -> None:
    # A Kubernetes Secret made with --from-file keeps the file's newline in the variable.
    token = app.stack.create_token()
    env = app.env(VAULTDB_AUTH_METHOD="token", VAULT_TOKEN=token + "\n")
    result = run_cli(["exec", "--", *python_child(tmp_path, "ok.py", "print('ran')")], env)
    assert result.returncode == 0, result.stderr
    assert "ran" in result.stdout
    assert token not in result.stdout + result.stderr
    assert app.users() == set()


def test_sigterm_during_the_first_login_revokes_and_never_starts_the_command(
        make_app: Callable[..., App], proxy: FaultProxy, tmp_path: Path) -> None:
    # Long TTLs: a user still there after exit would stay, so only a revocation removes it.
    app = make_app(default_ttl=600, max_ttl=1200, token_ttl=600)
    proxy.delay(3, match=r"/creds/")
    proc = Background(["exec", "-v", "--", *python_child(tmp_path, "worker.py", WORKER)],
                      app.env(VAULT_ADDR=proxy.addr, VAULTDB_FETCH_TIMEOUT="20"))
    try:
        wait_for(lambda: any("/creds/" in k for k in proxy.counts), timeout=30)
        proc.signal(signal.SIGTERM)  # the credentials request is in flight
        assert proc.finish() == 128 + signal.SIGTERM, proc.output
    finally:
        proc.kill()
    assert "start pid" not in proc.output
    assert "SIGTERM received before the command started" in proc.output
    assert app.users() == set()  # revoked before exit, not left for the TTL
    assert proxy.counts["PUT sys/leases/revoke"] >= 1
    assert proxy.counts["POST auth/token/revoke-self"] >= 1


def test_command_is_stopped_when_rotation_fails_for_good(
        make_app: Callable[..., App], proxy: FaultProxy, tmp_path: Path) -> None:
    app = make_app(default_ttl=4, max_ttl=20)
    proc = Background(["exec", "--grace", "5", "--", *python_child(tmp_path, "worker.py", WORKER)],
                      app.env(VAULT_ADDR=proxy.addr, VAULTDB_REQUEST_TIMEOUT="1",
                              VAULTDB_REVOKE_TIMEOUT="2", EXIT_ON_TERM="0"))
    try:
        proc.wait_for(r"start pid=")
        proxy.blackhole()  # Vault gone: no renewal, no new credentials
        proc.wait_for(r"got SIGTERM", timeout=60)
        assert proc.finish() == 125, proc.output
    finally:
        proc.kill()
    assert "expired and could not be replaced" in proc.output
    proxy.passthrough()
    wait_for(lambda: app.users() == set(), timeout=30)  # Vault ends the expired lease itself
