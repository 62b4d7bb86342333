"""``vaultdb check`` as a subprocess against the real stack: passing, failing, hints, cleanup."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from collections.abc import Callable

from clitools import CLI, App, Background, free_port_url, run_cli

from vaultdb.testing import APP_POLICY_HCL, FaultProxy, wait_for


def _lines(output: str, status: str) -> dict[str, str]:
    """``{step: rest of line}`` for every step with ``status`` in the text output."""
    out = {}
    for line in output.splitlines():
        stripped = line.strip()
        if stripped.startswith(f"[{status:^4}]"):
            name, _, rest = stripped[6:].strip().partition(" ")
            out[name] = rest.strip()
    return out


def _hint_after(output: str, step: str) -> str:
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if f"] {step} " in line and i + 1 < len(lines) and "hint:" in lines[i + 1]:
            return lines[i + 1].split("hint:", 1)[1].strip()
    raise AssertionError(f"no hint after step {step!r} in:\n{output}")


def test_check_passes_and_revokes_everything(app: App) -> None:
    result = run_cli(["check", "--dsn", app.dsn], app.env())
    assert result.returncode == 0, result.stdout + result.stderr
    ok = _lines(result.stdout, "ok")
    for step in ("config", "vault", "auth", "policy", "credentials", "database", "renewal",
                 "revocation", "settings"):
        assert step in ok, result.stdout
    assert "FAIL" not in result.stdout
    assert "current_user -> 'app_owner'" in ok["database"]
    assert f"-{app.role[:8]}-" in ok["credentials"]  # the dynamic user is named
    assert "can no longer log in" in ok["revocation"]
    assert "check passed" in result.stdout
    assert app.users() == set()
    app.assert_no_secret_in(result.stdout, result.stderr)


def test_check_json(app: App) -> None:
    result = run_cli(["check", "--json"], app.env())
    assert result.returncode == 0, result.stdout + result.stderr
    doc = json.loads(result.stdout)
    assert doc["ok"] is True and doc["exit_code"] == 0 and doc["role"] == app.role
    names = [c["name"] for c in doc["checks"]]
    assert names[:5] == ["config", "vault", "auth", "policy", "credentials"]
    assert {c["status"] for c in doc["checks"]} <= {"ok", "warn"}
    creds = next(c for c in doc["checks"] if c["name"] == "credentials")
    assert creds["details"]["lease_duration"] == 30
    app.assert_no_secret_in(result.stdout, result.stderr)
    assert app.users() == set()


def test_wrong_auth_role_fails_at_login_with_hint(app: App) -> None:
    result = run_cli(["check"], app.env(VAULTDB_AUTH_ROLE="no-such-role"))
    assert result.returncode == 1
    assert "auth" in _lines(result.stdout, "FAIL")
    hint = _hint_after(result.stdout, "auth")
    assert "role 'no-such-role' exists" in hint and "service account" in hint
    assert "credentials" in _lines(result.stdout, "skip")


def test_wrong_database_role_fails_at_credentials_with_hint(app: App) -> None:
    result = run_cli(["check", "--role", "no-such-db-role"], app.env())
    assert result.returncode == 1
    fail = _lines(result.stdout, "FAIL")
    assert list(fail) == ["credentials"], result.stdout
    assert "unknown role" in fail["credentials"]
    hint = _hint_after(result.stdout, "credentials")
    assert "role 'no-such-db-role' exists" in hint and "mounted at 'database'" in hint


def test_missing_revoke_capability_fails_with_the_policy_to_add(
        make_app: Callable[..., App], vaultdb_role_name: str) -> None:
    policy = f"{vaultdb_role_name}-norevoke"
    hcl = APP_POLICY_HCL.replace('path "sys/leases/revoke"', 'path "sys/leases/revoke-nothing"')
    app = make_app(policies=[policy])
    app.stack.write_policy(policy, hcl)
    result = run_cli(["check"], app.env())
    assert result.returncode == 1
    fail = _lines(result.stdout, "FAIL")
    assert "'update' on sys/leases/revoke" in fail["policy"]
    hint = _hint_after(result.stdout, "policy")
    assert policy in hint
    assert 'path "sys/leases/revoke" { capabilities = ["update"] }' in hint
    # The check goes on and shows the consequence, then cleans up through its own token.
    assert "credentials" in _lines(result.stdout, "ok")
    assert "revocation" in fail
    assert "sys/leases/revoke" in _hint_after(result.stdout, "revocation")
    wait_for(lambda: app.users() == set(), timeout=30)


def test_unreachable_vault_fails_first_with_hint(app: App) -> None:
    result = run_cli(["check", "--json"], app.env(VAULT_ADDR=free_port_url()))
    assert result.returncode == 1
    doc = json.loads(result.stdout)
    vault = next(c for c in doc["checks"] if c["name"] == "vault")
    assert vault["status"] == "FAIL"
    assert "unreachable" in vault["summary"]
    assert "VAULT_ADDR" in vault["hint"]
    assert all(c["status"] == "skip" for c in doc["checks"][2:])


def test_missing_configuration_is_a_failed_check(app: App) -> None:
    env = app.env()
    del env["VAULTDB_ROLE"]
    result = run_cli(["check"], env)
    assert result.returncode == 1
    assert "config" in _lines(result.stdout, "FAIL")
    assert "VAULTDB_ROLE" in _hint_after(result.stdout, "config")


def test_risky_settings_warn_and_strict_fails(make_app: Callable[..., App]) -> None:
    # Login token capped at 20 s while the lease may live 90 s; drain 40 s vs max_ttl 90 s.
    app = make_app(default_ttl=10, max_ttl=90, token_ttl=20, token_max_ttl=20)
    env = app.env(VAULTDB_DRAIN_SECONDS="40")
    result = run_cli(["check"], env)
    assert result.returncode == 0, result.stdout + result.stderr
    warn = _lines(result.stdout, "warn")
    assert "lease can outlive the login token" in warn["token"]
    assert "token_max_ttl" in _hint_after(result.stdout, "token")
    assert "drain window" in warn["drain"], result.stdout
    assert "VAULTDB_DRAIN_SECONDS" in _hint_after(result.stdout, "drain")
    strict = run_cli(["check", "--strict"], env)
    assert strict.returncode == 1
    assert app.users() == set()


def test_32_day_default_ttl_warns(make_app: Callable[..., App]) -> None:
    app = make_app(default_ttl=0, max_ttl=0)
    result = run_cli(["check"], app.env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "32 days" in _lines(result.stdout, "warn")["ttl"]
    assert "default_ttl" in _hint_after(result.stdout, "ttl")
    assert app.users() == set()


def test_usage_error_exits_2(app: App) -> None:
    result = run_cli(["check", "--no-such-option"], app.env())
    assert result.returncode == 2


def test_expired_token_file_fails_at_auth_with_hint(app: App) -> None:
    app.stack.write_service_account_token(app.token_path, ttl=-30)
    result = run_cli(["check"], app.env())
    assert result.returncode == 1
    assert "expired" in _lines(result.stdout, "FAIL")["auth"]
    assert "kubelet" in _hint_after(result.stdout, "auth")


def _lease_ttls(app: App) -> list[int]:
    """TTLs Vault has left on this role's leases (looked up with the root token)."""
    client = app.stack.root_client()
    prefix = f"database/creds/{app.role}/"
    try:
        keys = client.sys.list_leases(prefix)["data"]["keys"]
    except Exception:  # hvac raises InvalidPath when there is none
        return []
    return [int(client.sys.read_lease(prefix + key)["data"]["ttl"]) for key in keys]


def test_probe_lease_renewed_by_a_small_increment_when_it_cannot_be_revoked(
        make_app: Callable[..., App], vaultdb_role_name: str) -> None:
    # A token handed in (never revoked by the check) whose policy cannot revoke leases: the
    # probe lease survives the check, so its renewal decides how long the user lives on.
    app = make_app(default_ttl=30, max_ttl=3600)
    policy = f"{vaultdb_role_name}-norevoke"
    app.stack.write_policy(policy, APP_POLICY_HCL.replace('path "sys/leases/revoke"',
                                                          'path "sys/leases/revoke-nothing"'))
    token = app.stack.create_token(policies=[policy], ttl=3600)
    result = run_cli(["check"], app.env(VAULTDB_AUTH_METHOD="token", VAULT_TOKEN=token))
    assert result.returncode == 1, result.stdout + result.stderr
    ttls = _lease_ttls(app)
    assert ttls and max(ttls) <= 10, ttls  # not the role's max_ttl (an hour)
    ok, warn = _lines(result.stdout, "ok"), _lines(result.stdout, "warn")
    assert "renewed by 10s" in ok["renewal"], result.stdout  # 3 x drain (1 s), at least 10 s
    assert "lease could not be revoked" in warn["cleanup"]
    assert "sys/leases/revoke" in _hint_after(result.stdout, "cleanup")
    wait_for(lambda: app.users() == set(), timeout=30)
    assert token not in result.stdout + result.stderr


def test_hints_read_as_sentences(app: App) -> None:
    env = app.env()
    del env["VAULTDB_ROLE"]
    outputs = [run_cli(["check"], env).stdout,
               run_cli(["check"], app.env(VAULTDB_AUTH_ROLE="no-such-role")).stdout,
               run_cli(["check", "--role", "no-such-db-role"], app.env()).stdout,
               run_cli(["check"], app.env(VAULT_ADDR=free_port_url())).stdout]
    assert _hint_after(outputs[0], "config") == "Set VAULTDB_ROLE or pass --role."
    assert _hint_after(outputs[3], "vault").startswith("Check VAULT_ADDR")
    hints = [line.split("hint:", 1)[1].strip() for out in outputs for line in out.splitlines()
             if "hint:" in line]
    assert len(hints) >= 4
    for hint in hints:
        first = hint.split()[0]
        assert first[0].isupper(), hint
        assert hint.split()[:2] not in (["Check", "set"], ["Check", "add"], ["Check", "use"])
        assert hint[-1] in ".}", hint


def test_retry_warnings_are_notes_under_their_step_not_interleaved(
        app: App, proxy: FaultProxy) -> None:
    proxy.fail(503, match=r"auth/kubernetes/login")
    result = subprocess.run([*CLI, "check"], env=app.env(VAULT_ADDR=proxy.addr),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            timeout=90)
    assert result.returncode == 1, result.stdout
    lines = result.stdout.splitlines()
    assert lines[0].startswith("vaultdb check (") and lines[-1].startswith("check FAILED")
    assert not [li for li in lines if "WARNING" in li], result.stdout
    auth = next(i for i, li in enumerate(lines) if "] auth " in li)
    notes = [li for li in lines if "note:" in li]
    assert notes and all("retried" in li and "auth/kubernetes/login" in li for li in notes), \
        result.stdout
    # The notes sit right under the step they belong to (after its hint).
    assert lines[auth + 1].strip().startswith("hint:")
    assert all("note:" in li for li in lines[auth + 2:auth + 2 + len(notes)]), result.stdout


def test_sigterm_mid_check_still_revokes_everything(make_app: Callable[..., App],
                                                    proxy: FaultProxy) -> None:
    # TTLs far longer than the test: only a revocation can make the user go away.
    app = make_app(default_ttl=600, max_ttl=1200, token_ttl=600)
    proxy.delay(5, match=r"sys/leases/renew")
    proc = Background(["check"], app.env(VAULT_ADDR=proxy.addr))
    try:
        wait_for(lambda: proxy.counts["PUT sys/leases/renew"] >= 1, timeout=60)
        assert app.users(), "the check holds a lease while it renews"
        proc.signal(signal.SIGTERM)
        assert proc.finish() == 128 + signal.SIGTERM, proc.output
    finally:
        proc.kill()
    assert "stopped by SIGTERM" in proc.output
    assert re.search(r"\[ ok \] cleanup +revoked the lease, the login token", proc.output), \
        proc.output
    assert app.users() == set()
