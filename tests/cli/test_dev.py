"""``vaultdb dev``: a stack for your own app, driven only by the environment it prints."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys

from clitools import Background, run_cli

from vaultdb.testing import wait_for

APP = ("import os, sqlalchemy\n"
       "engine = sqlalchemy.create_engine(os.environ['DATABASE_URL'])\n"
       "with engine.connect() as c:\n"
       "    print('user=' + c.exec_driver_sql('select session_user').scalar())\n")


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("VAULT_", "BAO_", "VAULTDB_", "PG"))}


def test_dev_prints_an_environment_an_app_runs_with_then_stops_on_ctrl_c() -> None:
    proc = Background(["dev", "--ttl", "5", "--max-ttl", "20"], _clean_env())
    try:
        proc.wait_for("Press Ctrl-C", timeout=120)
        env = _clean_env()
        for line in proc.lines:
            if line.startswith("export "):
                key, _, value = line[len("export "):].partition("=")
                env[key] = shlex.split(value)[0]
        assert "plugin=vaultdb" in env["DATABASE_URL"] and env["PGHOST"] == "127.0.0.1"
        env["VAULTDB_HANDLE_SIGTERM"] = "false"
        app = subprocess.run([sys.executable, "-c", APP], env=env, capture_output=True,
                             text=True, timeout=60)
        assert app.returncode == 0, app.stderr
        assert app.stdout.startswith("user=v-")
        psql_like = run_cli(["exec", "--", sys.executable, "-c",
                             "import psycopg; print(psycopg.connect('').execute("
                             "'select session_user').fetchone()[0])"], env)
        assert psql_like.returncode == 0, psql_like.stderr
        assert psql_like.stdout.startswith("v-")
        proc.signal(signal.SIGINT)
        assert proc.finish(timeout=60) == 0
        assert "stopping the stack" in proc.output
        wait_for(lambda: subprocess.run([sys.executable, "-c", APP], env=env,
                                        capture_output=True, timeout=60).returncode != 0)
    finally:
        if proc.proc.poll() is None:
            proc.proc.kill()
