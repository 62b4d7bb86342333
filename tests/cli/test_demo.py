"""``vaultdb demo`` end to end: its own stack, real pods, renewals, rotations, revocation."""

from __future__ import annotations

import os
import re
import shlex
import signal
from pathlib import Path

from clitools import Background, run_cli

SUMMARY = re.compile(r"Summary: issued (\d+), renewed (\d+), rotated (\d+), revoked (\d+), "
                     r"leaked (\d+), failed queries (\d+)")


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("VAULT_", "BAO_", "VAULTDB_"))}


def test_demo_end_to_end() -> None:
    result = run_cli(["demo", "--duration", "15"], _clean_env(), timeout=240)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    match = SUMMARY.search(out)
    assert match, out
    issued, renewed, rotated, revoked, leaked, failed = map(int, match.groups())
    assert rotated >= 1 and renewed >= 3, out
    assert issued == revoked == 3 + rotated, out  # one user per pod, one more per rotation
    assert leaked == 0 and failed == 0
    assert "Result: OK" in out
    assert "CREDENTIALS EXPIRED" not in out  # every rotation happened in time
    # The plain (non-terminal) view: pods log in, users appear and disappear in pg_roles.
    assert len(set(re.findall(r"(pod-\d)\s+logged in to Vault \(kubernetes auth", out))) == 3
    assert re.search(r"pod-\d\s+rotated v-\S+ -> v-\S+", out)
    for pod in ("pod-1", "pod-2", "pod-3"):
        assert re.search(rf"{pod}\s+SIGTERM", out) and re.search(rf"{pod}\s+exited \(status 0\)",
                                                                  out)
    added = set(re.findall(r"pg_roles\s+\+ (\S+)", out))
    dropped = set(re.findall(r"pg_roles\s+- (\S+) \(dropped\)", out))
    assert len(added) == issued and dropped == added
    assert "\x1b[" not in out  # no terminal control codes when stdout is not a terminal


def test_demo_keep_leaves_a_usable_stack(tmp_path: Path) -> None:
    proc = Background(["demo", "--duration", "1", "--pods", "1", "--keep"], _clean_env())
    try:
        (source,) = proc.wait_for(r"^\s+source (\S+)$", timeout=120)
        proc.wait_for("Press Ctrl-C")
        env = dict(_clean_env())
        for line in Path(source.group(1)).read_text().splitlines():
            if line.startswith("export ") and not line.startswith("export PATH="):
                key, _, value = line[len("export "):].partition("=")
                env[key] = shlex.split(value)[0]
        pg = f"postgresql://{env['PGHOST']}:{env['PGPORT']}/{env['PGDATABASE']}"
        check = run_cli(["check", "--dsn", pg], env)
        assert check.returncode == 0, check.stdout + check.stderr
        proc.signal(signal.SIGINT)
        assert proc.finish(timeout=60) == 0
    finally:
        proc.kill()
    assert SUMMARY.search(proc.output)
    assert not Path(source.group(1)).exists()  # the stack's files are gone


def test_demo_on_mariadb_end_to_end() -> None:
    """``--db mysql``: the same story on a real MariaDB (skipped when none is installed,
    except under VAULTDB_REQUIRE_SERVERS=1)."""
    import pytest

    from vaultdb.testing._mysql import find_mariadbd

    try:
        find_mariadbd()
    except FileNotFoundError as exc:
        if os.environ.get("VAULTDB_REQUIRE_SERVERS") == "1":
            raise
        pytest.skip(str(exc))
    result = run_cli(["demo", "--db", "mysql", "--duration", "12"], _clean_env(), timeout=240)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    match = SUMMARY.search(out)
    assert match, out
    issued, _, rotated, revoked, leaked, failed = map(int, match.groups())
    assert rotated >= 1 and issued == revoked == 3 + rotated, out
    assert leaked == 0 and failed == 0
    added = set(re.findall(r"mysql\.user\s+\+ (\S+)", out))
    dropped = set(re.findall(r"mysql\.user\s+- (\S+) \(dropped\)", out))
    assert len(added) == issued and dropped == added
    assert all(len(user) <= 32 for user in added)  # the plugin's default template
