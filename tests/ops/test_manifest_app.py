"""The containers of the Kubernetes examples, run locally with the manifests' own settings.

Each container's ``command`` runs as written (``python`` is this interpreter, image paths map
to the files the Dockerfile copies) with the manifest's environment. Only what points outside
the pod is redirected to the test stack: ``VAULT_ADDR`` (a plain-HTTP dev server, so no
``VAULT_CACERT``), ``PGHOST``/``PGPORT``, and files inside mounted volumes, which live under a
temporary root (the projected service-account token is written there the way the kubelet
writes it). Vault's roles are created with the names, service account, namespace and audience
the manifests use, so the wiring is proven, not just parsed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from k8s_manifests import K8S, Manifest, env_of, mount_of, namespace_of, one, pod_spec

from vaultdb.testing import VaultDBStack, wait_for
from vaultdb.testing._ports import free_port

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent


def image_paths() -> dict[str, Path]:
    """``COPY src dest`` lines of the example's Dockerfile: image path -> file here."""
    dockerfile = K8S / "app" / "Dockerfile"
    copies = re.findall(r"^COPY\s+(\S+)\s+(\S+)$", dockerfile.read_text(), re.MULTILINE)
    return {dest: dockerfile.parent / src for src, dest in copies}


def local_command(command: list[str]) -> list[str]:
    images = image_paths()
    out = []
    for arg in command:
        if arg == "python":
            out.append(sys.executable)
        elif arg == "vaultdb":
            out.append(str(BIN / "vaultdb"))
        elif arg in images:
            out.append(str(images[arg]))
        else:
            out.append(arg)
    return out


def local_env(stack: VaultDBStack, workload: Manifest, root: Path, **overrides: str
              ) -> dict[str, str]:
    """The container's environment, redirected to the stack and the temporary pod root.

    Also writes the projected service-account token where the pod would find it.
    """
    spec = pod_spec(workload)
    container = spec["containers"][0]
    env = env_of(container)
    for name, value in list(env.items()):
        found = mount_of(spec, container, value)
        if found is None:
            continue
        env[name] = str(root / value.lstrip("/"))
        sources = found[1].get("projected", {}).get("sources", [])
        for source in sources:
            token = source.get("serviceAccountToken")
            if token and value.endswith("/" + token["path"]):
                stack.write_service_account_token(
                    env[name], service_account=spec["serviceAccountName"],
                    namespace=namespace_of(workload.path), audiences=(token["audience"],))
    del env["VAULT_CACERT"]  # the dev server speaks plain HTTP
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("VAULT", "BAO", "PG"))}
    return {**base, **env, "VAULT_ADDR": stack.vault_addr, "PGHOST": stack.postgres.host,
            "PGPORT": str(stack.postgres.port), **overrides}


@pytest.fixture(scope="module")
def vault_roles(vaultdb_stack: VaultDBStack) -> dict[str, str]:
    """The operator's side, named as the manifests name it (TTLs short enough to watch)."""
    roles = {}
    for workload in (one("Deployment"), one("Job")):
        spec = pod_spec(workload)
        env = env_of(spec["containers"][0])
        vaultdb_stack.create_database_role(env["VAULTDB_ROLE"], default_ttl=30, max_ttl=120)
        vaultdb_stack.create_kubernetes_role(
            env["VAULTDB_AUTH_ROLE"], service_account=spec["serviceAccountName"],
            namespace=str(namespace_of(workload.path)), audience="vault")
        roles[workload.kind] = env["VAULTDB_ROLE"]
    return roles


def http_get(port: int, path: str) -> tuple[int, dict[str, Any] | str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
            status, body = resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read().decode()
    if body.startswith("{"):
        return status, json.loads(body)
    return status, body


def wait_probe(proc: subprocess.Popen[str], port: int, path: str, log: Path) -> None:
    def ok() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"app exited {proc.returncode}:\n{log.read_text()}")
        try:
            return http_get(port, path)[0] == 200
        except OSError:
            return False

    wait_for(ok, timeout=30, interval=0.1)


@pytest.fixture(scope="module")
def migrated(vaultdb_stack: VaultDBStack, vault_roles: dict[str, str],
             tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess[str]:
    job = one("Job")
    root = tmp_path_factory.mktemp("job-pod")
    command = local_command(pod_spec(job)["containers"][0]["command"])
    return subprocess.run(command, env=local_env(vaultdb_stack, job, root), cwd=root,
                          capture_output=True, text=True, timeout=120, check=False)


def test_migration_job_command_runs_and_revokes(
        vaultdb_stack: VaultDBStack, migrated: subprocess.CompletedProcess[str]) -> None:
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    owner = vaultdb_stack.sql("SELECT tableowner FROM pg_tables WHERE tablename = 'visits'")
    assert owner == [("app_owner",)]
    # `vaultdb exec` revoked its lease on the way out: the Job leaves no database user.
    users = re.findall(r"migrated as (\S+)", migrated.stdout + migrated.stderr)
    assert users and users[0] not in vaultdb_stack.dynamic_db_roles()


@pytest.fixture
def pod(vaultdb_stack: VaultDBStack, vault_roles: dict[str, str],
        migrated: subprocess.CompletedProcess[str], tmp_path: Path
        ) -> Iterator[tuple[subprocess.Popen[str], int, Path]]:
    assert migrated.returncode == 0, migrated.stderr
    deployment = one("Deployment")
    port = free_port()
    env = local_env(vaultdb_stack, deployment, tmp_path / "pod", PORT=str(port),
                    APP_SHUTDOWN_DELAY="1")
    log = tmp_path / "app.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            local_command(pod_spec(deployment)["containers"][0]["command"]), env=env,
            cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, text=True,
            start_new_session=True)
    try:
        yield proc, port, log
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_deployment_command_serves_probes_and_revokes_on_sigterm(
        vaultdb_stack: VaultDBStack, pod: tuple[subprocess.Popen[str], int, Path]) -> None:
    proc, port, log = pod
    container = pod_spec(one("Deployment"))["containers"][0]
    ready_path = container["readinessProbe"]["httpGet"]["path"]
    live_path = container["livenessProbe"]["httpGet"]["path"]

    wait_probe(proc, port, live_path, log)
    wait_probe(proc, port, ready_path, log)

    status, body = http_get(port, "/")
    assert status == 200, body
    assert isinstance(body, dict)
    user = body["session_user"]
    assert body["generation"] == 1 and body["visits"] >= 1
    assert user in vaultdb_stack.dynamic_db_roles()

    status, metrics = http_get(port, "/metrics")
    assert status == 200 and isinstance(metrics, str)
    assert 'vaultdb_generation{mount="database",role="app"} 1.0' in metrics
    assert "vaultdb_vault_request_duration_seconds_count" in metrics

    proc.send_signal(signal.SIGTERM)
    # During the shutdown delay the pod still serves but is no longer ready.
    with contextlib.suppress(OSError):
        assert http_get(port, ready_path)[0] == 503
    assert proc.wait(30) == 0, log.read_text()
    assert user not in vaultdb_stack.dynamic_db_roles()
    text = log.read_text()
    assert "revoked" in text.lower()
    assert not re.search(r"password\s*[=:]\s*\S", text, re.IGNORECASE)


def test_liveness_survives_a_vault_outage(
        vaultdb_stack: VaultDBStack, pod: tuple[subprocess.Popen[str], int, Path]) -> None:
    proc, port, log = pod
    wait_probe(proc, port, "/readyz", log)
    vaultdb_stack.pause_vault()
    try:
        # Vault frozen: the pod stays alive and, holding valid credentials, ready.
        assert http_get(port, "/healthz")[0] == 200
        assert http_get(port, "/readyz")[0] == 200
        assert http_get(port, "/")[0] == 200
    finally:
        vaultdb_stack.resume_vault()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0, log.read_text()
