"""Loading the Kubernetes examples: every manifest, kustomizations, and the workloads in them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "examples" / "kubernetes"


@dataclass(frozen=True)
class Manifest:
    path: Path
    doc: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.doc["kind"])

    @property
    def name(self) -> str:
        return str(self.doc["metadata"]["name"])

    def __repr__(self) -> str:
        return f"{self.kind}/{self.name} ({self.path.relative_to(ROOT)})"


def kustomizations() -> list[Path]:
    return sorted(K8S.rglob("kustomization.yaml"))


def manifests() -> list[Manifest]:
    """Every Kubernetes object in examples/kubernetes (kustomization files excluded)."""
    found = []
    for path in sorted(K8S.rglob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                found.append(Manifest(path, doc))
    return found


def one(kind: str, name: str | None = None) -> Manifest:
    matches = [m for m in manifests() if m.kind == kind and (name is None or m.name == name)]
    assert len(matches) == 1, f"expected one {kind} {name or ''}: {matches}"
    return matches[0]


def namespace_of(path: Path) -> str | None:
    """The namespace a kustomization above ``path`` assigns, if any."""
    for parent in path.parents:
        k = parent / "kustomization.yaml"
        if k.exists():
            ns = yaml.safe_load(k.read_text()).get("namespace")
            if ns:
                return str(ns)
        if parent == K8S:
            break
    return None


def pod_spec(m: Manifest) -> dict[str, Any]:
    return dict(m.doc["spec"]["template"]["spec"])


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: str(e["value"]) for e in container.get("env", []) if "value" in e}


def mount_of(spec: dict[str, Any], container: dict[str, Any], path: str
             ) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The (volumeMount, volume) under which ``path`` lies in the pod, if any."""
    for mount in container.get("volumeMounts", []):
        prefix = mount["mountPath"].rstrip("/") + "/"
        if path.startswith(prefix):
            volume = next(v for v in spec.get("volumes", []) if v["name"] == mount["name"])
            return mount, volume
    return None
