"""vaultdb.integrations.prometheus, scraped over HTTP from real /metrics endpoints.

The example app of examples/kubernetes runs as a subprocess with short TTLs (renewals,
rotations and revocations happen within seconds), and an in-process provider is exposed with
prometheus_client's own HTTP server. Nothing is mocked: Vault and PostgreSQL are the stack's.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.parser import text_string_to_metric_families
from vaultdb.integrations.prometheus import instrument, uninstrument_registry

from vaultdb import CredentialProvider, KubernetesAuth, SecretPathError
from vaultdb.testing import VaultDBStack, wait_for
from vaultdb.testing._ports import free_port

APP = Path(__file__).resolve().parents[3] / "examples" / "kubernetes" / "app" / "app.py"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
#: Labels of the stack's PostgreSQL mount, next to `role` on every per-provider metric.
DB = {"mount": "database"}


def scrape(port: int) -> tuple[str, Samples]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return text, samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


@pytest.fixture
def roles(vaultdb_stack: VaultDBStack, vaultdb_role_name: str, tmp_path: Path) -> Path:
    vaultdb_stack.create_database_role(vaultdb_role_name, default_ttl=3, max_ttl=6)
    vaultdb_stack.create_kubernetes_role(vaultdb_role_name)
    return vaultdb_stack.write_service_account_token(tmp_path / "sa" / "token")


@pytest.fixture
def app(vaultdb_stack: VaultDBStack, vaultdb_role_name: str, roles: Path, tmp_path: Path
        ) -> Iterator[tuple[subprocess.Popen[str], int, Path]]:
    vaultdb_stack.sql("CREATE TABLE IF NOT EXISTS visits (id bigserial PRIMARY KEY, "
                      "username text NOT NULL, at timestamptz NOT NULL DEFAULT now())")
    vaultdb_stack.sql("ALTER TABLE visits OWNER TO app_owner")
    port = free_port()
    env = vaultdb_stack.env(
        VAULTDB_ROLE=vaultdb_role_name, VAULTDB_AUTH_METHOD="kubernetes",
        VAULTDB_AUTH_ROLE=vaultdb_role_name, VAULTDB_TOKEN_PATH=str(roles),
        VAULTDB_DRAIN_SECONDS="1", PORT=str(port), APP_METRICS="true",
        APP_SHUTDOWN_DELAY="0")
    log = tmp_path / "app.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, str(APP)], env=env, stdout=out,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        yield proc, port, log
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


@pytest.mark.slow
def test_example_app_metrics_follow_renewals_rotations_and_revocations(
        app: tuple[subprocess.Popen[str], int, Path], vaultdb_role_name: str) -> None:
    proc, port, log = app
    role = vaultdb_role_name

    def scraped() -> Samples | None:
        if proc.poll() is not None:
            raise AssertionError(f"app exited {proc.returncode}:\n{log.read_text()}")
        try:
            return scrape(port)[1]
        except OSError:
            return None

    def rotated_and_revoked() -> Samples | None:
        samples = scraped()
        if not samples:
            return None
        done = ((value(samples, "vaultdb_revocations_total", **DB, role=role) or 0) >= 1
                and (value(samples, "vaultdb_renewals_total", **DB, role=role) or 0) >= 1)
        return samples if done else None

    samples = wait_for(rotated_and_revoked, timeout=40, interval=0.25)
    assert samples is not None
    assert (value(samples, "vaultdb_rotations_total", **DB, role=role) or 0) >= 1
    assert (value(samples, "vaultdb_generation", **DB, role=role) or 0) >= 2
    assert value(samples, "vaultdb_healthy", **DB, role=role) == 1.0
    assert value(samples, "vaultdb_logins_total", **DB, role=role) == 1.0
    assert 0 < (value(samples, "vaultdb_lease_seconds_left", **DB, role=role) or 0) <= 6
    assert 0 < (value(samples, "vaultdb_token_seconds_left", **DB, role=role) or 0) <= 60
    assert value(samples, "vaultdb_expirations_total", **DB, role=role) == 0.0
    latency = "vaultdb_vault_request_duration_seconds_count"
    assert (value(samples, latency, method="POST", path="auth/kubernetes/login",
                  outcome="ok") or 0) >= 1
    assert (value(samples, latency, method="GET", path=f"database/creds/{role}",
                  outcome="ok") or 0) >= 2
    assert (value(samples, latency, method="PUT", path="sys/leases/renew", outcome="ok")
            or 0) >= 1
    assert (value(samples, latency, method="PUT", path="sys/leases/revoke", outcome="ok")
            or 0) >= 1
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0, log.read_text()


def test_errors_by_kind_and_no_secret_in_a_scrape(
        vaultdb_stack: VaultDBStack, vaultdb_role_name: str, roles: Path) -> None:
    registry = CollectorRegistry()
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    auth = KubernetesAuth(role=vaultdb_role_name, token_path=str(roles))
    good = CredentialProvider(vaultdb_role_name, auth=auth, vault_addr=vaultdb_stack.vault_addr,
                              handle_sigterm=False)
    bad = CredentialProvider("no-such-role", auth=auth, vault_addr=vaultdb_stack.vault_addr,
                             handle_sigterm=False, fetch_timeout=2)
    try:
        instrument(good, registry=registry)
        instrument(good, registry=registry)  # idempotent
        instrument(bad, registry=registry)
        creds = good.credentials()
        with pytest.raises(SecretPathError):
            bad.credentials()
        text, samples = scrape(port)
        assert value(samples, "vaultdb_errors_total", **DB, role="no-such-role",
                     kind="SecretPathError") == 1.0
        assert value(samples, "vaultdb_healthy", **DB, role="no-such-role") == 0.0
        assert value(samples, "vaultdb_generation", **DB, role=vaultdb_role_name) == 1.0
        assert value(samples, "vaultdb_vault_request_duration_seconds_count", method="GET",
                     path="database/creds/no-such-role", outcome="SecretPathError") == 1.0
        for secret in (creds.username, creds.password, str(creds.lease_id)):
            assert secret not in text
    finally:
        good.close()
        bad.close()
        uninstrument_registry(registry)
        server.shutdown()
        thread.join(5)


def test_nothing_is_exported_unless_asked(vaultdb_stack: VaultDBStack) -> None:
    code = (
        "import prometheus_client, vaultdb, vaultdb.integrations.prometheus\n"
        "from vaultdb import CredentialProvider, TokenAuth\n"
        "p = CredentialProvider('x', auth=TokenAuth(token='t'), vault_addr='http://127.0.0.1:1')\n"
        "text = prometheus_client.generate_latest().decode()\n"
        "assert 'vaultdb' not in text, text\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def test_example_app_without_metrics_has_no_metrics_route(
        vaultdb_stack: VaultDBStack, vaultdb_role_name: str, roles: Path,
        tmp_path: Path) -> None:
    port = free_port()
    env = vaultdb_stack.env(
        VAULTDB_ROLE=vaultdb_role_name, VAULTDB_AUTH_METHOD="kubernetes",
        VAULTDB_AUTH_ROLE=vaultdb_role_name, VAULTDB_TOKEN_PATH=str(roles), PORT=str(port),
        APP_SHUTDOWN_DELAY="0")
    proc = subprocess.Popen([sys.executable, str(APP)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        def status() -> int | None:
            try:
                scrape(port)
                return 200
            except urllib.error.HTTPError as exc:
                return exc.code
            except OSError:
                return None

        assert wait_for(status, timeout=30, interval=0.1) == 404
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
