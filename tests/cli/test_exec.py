"""``vaultdb exec`` as a subprocess around real child processes, against the real stack."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

from clitools import App, Background, free_port_url, python_child, run_cli

from vaultdb.testing import wait_for

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
    assert "hint: check VAULT_ADDR" in result.stderr


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
