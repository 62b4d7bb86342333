"""The Kubernetes examples, checked offline against the Kubernetes API schema.

The schema is the kubernetes Python client's generated models (pydantic, unknown fields
forbidden), so a misspelt or misplaced field fails here, not at ``kubectl apply``.
"""

from __future__ import annotations

from pathlib import Path

import kubernetes.client
import pytest
import yaml
from k8s_manifests import (
    K8S,
    ROOT,
    Manifest,
    env_of,
    kustomizations,
    manifests,
    mount_of,
    namespace_of,
    one,
    pod_spec,
)

from vaultdb.settings import ENVIRONMENT

#: The current (GA, not deprecated) API version of each kind the examples use.
CURRENT = {
    "Namespace": "v1",
    "ServiceAccount": "v1",
    "ConfigMap": "v1",
    "Service": "v1",
    "Deployment": "apps/v1",
    "Job": "batch/v1",
    "PodDisruptionBudget": "policy/v1",
    "ClusterRoleBinding": "rbac.authorization.k8s.io/v1",
}
ALL = manifests()


def model_class(api_version: str, kind: str) -> type:
    version = api_version.rsplit("/", 1)[-1]
    return getattr(kubernetes.client, f"{version.capitalize()}{kind}")  # type: ignore[no-any-return]


@pytest.mark.parametrize("manifest", ALL, ids=repr)
def test_manifest_matches_the_kubernetes_schema(manifest: Manifest) -> None:
    doc = manifest.doc
    assert CURRENT.get(doc["kind"]) == doc["apiVersion"], f"{manifest}: not a current API version"
    model = model_class(doc["apiVersion"], doc["kind"])
    obj = model.model_validate(doc)  # type: ignore[attr-defined]
    # Round trip: nothing was dropped on the way (every field is known to the schema).
    assert _strip_none(obj.to_dict(serialize=True)) == _normalise(doc)


def _strip_none(value: object) -> object:
    if isinstance(value, dict):
        return {k: _strip_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_strip_none(v) for v in value]
    return value


def _normalise(value: object) -> object:
    return yaml.safe_load(yaml.safe_dump(value))


def test_the_api_groups_are_served_by_a_current_client() -> None:
    # Removed versions (extensions/v1beta1, policy/v1beta1, batch/v1beta1) have no API class.
    for api_version in set(CURRENT.values()):
        group, _, version = api_version.rpartition("/")
        prefix = "".join(p.capitalize() for p in group.removesuffix(".k8s.io").split("."))
        name = f"{prefix or 'Core'}{version.capitalize()}Api"
        assert hasattr(kubernetes.client, name), name


@pytest.mark.parametrize("kustomization", kustomizations(),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_kustomization_lists_every_file_and_nothing_missing(kustomization: Path) -> None:
    doc = yaml.safe_load(kustomization.read_text())
    assert doc["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert doc["kind"] == "Kustomization"
    listed = doc["resources"]
    here = kustomization.parent
    for resource in listed:
        target = here / resource
        assert target.is_file() or (target / "kustomization.yaml").is_file(), resource
    local = {p.name for p in here.glob("*.yaml")} - {"kustomization.yaml"}
    assert local <= set(listed), f"not listed in {kustomization}: {local - set(listed)}"


def test_top_level_kustomization_covers_the_app_and_the_migration() -> None:
    doc = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert {"base", "migration"} <= set(doc["resources"])
    assert doc["namespace"]


def workloads() -> list[Manifest]:
    return [m for m in ALL if m.kind in ("Deployment", "Job")]


@pytest.mark.parametrize("workload", workloads(), ids=repr)
def test_no_init_container_no_sidecar_no_prestop(workload: Manifest) -> None:
    spec = pod_spec(workload)
    assert not spec.get("initContainers")
    assert len(spec["containers"]) == 1, "one container: no Vault Agent sidecar"
    for container in spec["containers"]:
        assert "preStop" not in (container.get("lifecycle") or {})
        assert "postStart" not in (container.get("lifecycle") or {})


@pytest.mark.parametrize("workload", workloads(), ids=repr)
def test_vault_login_wiring(workload: Manifest) -> None:
    spec = pod_spec(workload)
    container = spec["containers"][0]
    env = env_of(container)
    known = {s.name for s in ENVIRONMENT}
    unknown = {n for n in env if n.startswith(("VAULT_", "VAULTDB_"))} - known
    assert not unknown, f"not vaultdb settings (typo?): {unknown}"
    assert env["VAULTDB_AUTH_METHOD"] == "kubernetes"
    assert env["VAULT_ADDR"].startswith("https://")
    # The token file is a projected, audience-bound token: no default automount, no Secret.
    assert spec["automountServiceAccountToken"] is False
    found = mount_of(spec, container, env["VAULTDB_TOKEN_PATH"])
    assert found is not None, "VAULTDB_TOKEN_PATH is not inside a mounted volume"
    mount, volume = found
    token = volume["projected"]["sources"][0]["serviceAccountToken"]
    assert env["VAULTDB_TOKEN_PATH"] == f"{mount['mountPath']}/{token['path']}"
    assert token["audience"] == "vault"
    assert mount_of(spec, container, env["VAULT_CACERT"]) is not None
    # The pod runs as a service account the same kustomization tree defines.
    account = spec["serviceAccountName"]
    assert any(m.kind == "ServiceAccount" and m.name == account for m in ALL)
    assert namespace_of(workload.path)


def test_deployment_replicas_probes_and_grace_period() -> None:
    deployment = one("Deployment")
    assert deployment.doc["spec"]["replicas"] == 3
    spec = pod_spec(deployment)
    container = spec["containers"][0]
    env = env_of(container)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    ready, live = container["readinessProbe"], container["livenessProbe"]
    assert ready["httpGet"]["path"] != live["httpGet"]["path"]
    for probe in (ready, live):
        assert probe["httpGet"]["port"] in ports
        assert probe["timeoutSeconds"] >= 3  # /readyz may try a fetch for up to 2 s
    assert str(ports[ready["httpGet"]["port"]]) == env["PORT"]
    # SIGTERM -> shutdown delay -> requests in flight -> revocation, inside the grace period.
    budget = float(env["APP_SHUTDOWN_DELAY"]) + 10 + float(env["VAULTDB_REVOKE_TIMEOUT"])
    assert spec["terminationGracePeriodSeconds"] >= budget
    assert env["VAULTDB_ROLE"] and env["VAULTDB_AUTH_ROLE"]


def test_migration_job_runs_under_vaultdb_exec() -> None:
    job = one("Job")
    spec = pod_spec(job)
    command = spec["containers"][0]["command"]
    assert command[:3] == ["vaultdb", "exec", "--"]
    assert spec["restartPolicy"] == "Never"
    assert job.doc["spec"]["ttlSecondsAfterFinished"] > 0
    assert env_of(spec["containers"][0])["VAULTDB_ROLE"] != env_of(
        pod_spec(one("Deployment"))["containers"][0])["VAULTDB_ROLE"]


def test_token_review_rbac_without_legacy_token_secrets() -> None:
    bindings = [m for m in ALL if m.kind == "ClusterRoleBinding"]
    assert bindings
    for binding in bindings:
        assert binding.doc["roleRef"]["name"] == "system:auth-delegator"
        assert all(s["kind"] == "ServiceAccount" for s in binding.doc["subjects"])
    for m in ALL:
        assert not (m.kind == "Secret"
                    and m.doc.get("type") == "kubernetes.io/service-account-token"), m
        if m.kind == "ServiceAccount":
            assert "secrets" not in m.doc, m
            assert m.doc.get("automountServiceAccountToken") is False, m
