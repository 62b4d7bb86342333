"""examples/observability: the Grafana dashboard and the Prometheus alert rules.

Every metric a dashboard query, a dashboard variable or an alert expression names must be one
vaultdb's exporter really serves: the names are parsed out of the PromQL and compared with a
scrape of ``/metrics`` from a real run (real OpenBao, one provider with credentials and one
with an error, so every family has samples). Grouping and matcher labels must be the
exporter's labels or the scrape's own target labels. The rules must pass ``promtool check
rules`` (Debian's ``prometheus`` package; ``.ci/run`` installs it): skipped locally without
promtool, a failure when ``VAULTDB_REQUIRE_SERVERS=1``. docs/operations.md shows the very
rules file (a snippet include), so the docs cannot drift from what is tested.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.parser import text_string_to_metric_families
from vaultdb.integrations.prometheus import instrument, uninstrument_registry

from vaultdb import CredentialProvider, SecretPathError, TokenAuth
from vaultdb.testing import VaultDBStack
from vaultdb.testing._ports import free_port

ROOT = Path(__file__).resolve().parents[3]
OBSERVABILITY = ROOT / "examples" / "observability"
DASHBOARD = OBSERVABILITY / "grafana-dashboard.json"
RULES = OBSERVABILITY / "vaultdb-alerts.yml"
#: Labels the scrape adds (Prometheus target labels, Kubernetes service discovery) and ``le``.
TARGET_LABELS = {"pod", "namespace", "instance", "job", "container", "le"}

# -- a small PromQL reader: enough for metric and label names --------------------------------

_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and",
             "or", "unless", "offset", "inf", "nan", "atan2"}
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_IDENT = re.compile(r"(?<![\w.:$])([A-Za-z_:][\w:]*)")


def _strip_strings(expr: str) -> str:
    return re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`', '""', expr)


def promql_metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (functions, keywords and labels left out)."""
    text = _strip_strings(expr)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = _GROUPING.sub(" ", text)
    text = re.sub(r"\$\{?\w+\}?", " ", text)  # Grafana variables
    names = set()
    for match in _IDENT.finditer(text):
        name, rest = match.group(1), text[match.end():].lstrip()
        if rest.startswith("(") or name in _KEYWORDS:
            continue  # a function or aggregation, or a keyword
        names.add(name)
    return names


def promql_label_names(expr: str) -> set[str]:
    """Label names used in groupings and matchers."""
    text = _strip_strings(expr)
    labels = {label.strip() for _, group in _GROUPING.findall(text)
              for label in group.split(",") if label.strip()}
    for matchers in re.findall(r"\{([^}]*)\}", text):
        labels |= set(re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", matchers))
    return labels


def test_the_promql_reader_itself() -> None:
    expr = ('histogram_quantile(0.99, sum by (le, path) (rate(vaultdb_a_bucket{pod=~"$pod", '
            'x="a{b}"}[$__rate_interval]))) > 1 and on (role) vaultdb_b offset 5m '
            'or vector(0) unless count(bogus_metric == 0)')
    assert promql_metric_names(expr) == {"vaultdb_a_bucket", "vaultdb_b", "bogus_metric"}
    assert promql_label_names(expr) == {"le", "path", "pod", "x", "role"}


# -- what the exporter really serves ---------------------------------------------------------

@pytest.fixture(scope="module")
def exported(vaultdb_stack: VaultDBStack) -> Iterator[dict[str, set[str]]]:
    """``{sample name: label names}`` from a scrape of a real exporter over HTTP."""
    role = "obs-dashboard"
    vaultdb_stack.create_database_role(role, default_ttl=60, max_ttl=120)
    token = vaultdb_stack.create_token(ttl=300)
    registry = CollectorRegistry()
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    common: dict[str, Any] = {"auth": TokenAuth(token=token),
                              "vault_addr": vaultdb_stack.vault_addr, "handle_sigterm": False}
    good = CredentialProvider(role, **common)
    bad = CredentialProvider("no-such-role", fetch_timeout=2, **common)
    try:
        instrument(good, registry=registry)
        instrument(bad, registry=registry)
        good.credentials()
        with pytest.raises(SecretPathError):
            bad.credentials()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            text = resp.read().decode()
    finally:
        good.close()
        bad.close()
        uninstrument_registry(registry)
        server.shutdown()
        thread.join(5)
    names: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    yield names


def _dashboard_queries() -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable of the dashboard."""
    board = json.loads(DASHBOARD.read_text())
    queries = []
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            queries.append((f"panel {panel['title']!r}", target["expr"]))
    for var in board["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            inner = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", query)
            assert inner, f"variable {var['name']}: only label_values(metric, label) is used"
            queries.append((f"variable {var['name']!r}", inner.group(1)))
            queries.append((f"variable {var['name']!r} label", f"x{{{inner.group(2)}=\"\"}}"))
    return queries


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def _check(where: str, expr: str, exported: dict[str, set[str]]) -> list[str]:
    problems = []
    known_labels = set().union(*exported.values()) | TARGET_LABELS
    names = promql_metric_names(expr) - {"x"}
    for name in sorted(names - set(exported)):
        problems.append(f"{where}: {name} is not exported")
    for label in sorted(promql_label_names(expr) - known_labels):
        problems.append(f"{where}: label {label!r} is neither exported nor a target label")
    return problems


def test_exporter_run_covers_every_family(exported: dict[str, set[str]]) -> None:
    # Guards the comparison below: a family without samples would look "not exported".
    for name in ("vaultdb_lease_seconds_left", "vaultdb_token_seconds_left", "vaultdb_healthy",
                 "vaultdb_generation", "vaultdb_logins_total", "vaultdb_renewals_total",
                 "vaultdb_rotations_total", "vaultdb_revocations_total",
                 "vaultdb_expirations_total", "vaultdb_errors_total",
                 "vaultdb_vault_request_duration_seconds_bucket"):
        assert name in exported, sorted(exported)


def test_dashboard_names_only_exported_metrics(exported: dict[str, set[str]]) -> None:
    queries = _dashboard_queries()
    assert len(queries) >= 15
    problems = [p for where, expr in queries for p in _check(where, expr, exported)]
    assert not problems, "\n".join(problems)
    used = set().union(*(promql_metric_names(e) for _, e in queries))
    # Time left on lease and token, renewals, rotations, errors: the list.
    assert {"vaultdb_lease_seconds_left", "vaultdb_token_seconds_left", "vaultdb_renewals_total",
            "vaultdb_rotations_total", "vaultdb_errors_total"} <= used
    assert all("role" in promql_label_names(e) or "vault_request" in e
               for w, e in queries if w.startswith("panel") and "by (" in e)


def test_alert_rules_name_only_exported_metrics(exported: dict[str, set[str]]) -> None:
    rules = _rules()
    assert {r["alert"] for r in rules} >= {"VaultDBCredentialsLost", "VaultDBVaultErrors"}
    problems = [p for r in rules for p in _check(f"alert {r['alert']}", r["expr"], exported)]
    assert not problems, "\n".join(problems)


def test_a_wrong_metric_name_is_caught(exported: dict[str, set[str]]) -> None:
    assert _check("probe", "sum(rate(vaultdb_renewal_total[5m]))", exported) == [
        "probe: vaultdb_renewal_total is not exported"]
    assert _check("probe", "sum by (user) (vaultdb_healthy)", exported) == [
        "probe: label 'user' is neither exported nor a target label"]


def test_rules_pass_promtool() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("VAULTDB_REQUIRE_SERVERS") == "1":
            pytest.fail("promtool is missing (apt-get install prometheus) and "
                        "VAULTDB_REQUIRE_SERVERS=1")
        pytest.skip("promtool not installed (Debian: apt-get install prometheus)")
    out = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in out.stdout


def test_operations_doc_shows_the_tested_rules() -> None:
    doc = (ROOT / "docs" / "operations.md").read_text()
    assert '--8<-- "examples/observability/vaultdb-alerts.yml"' in doc
    assert "examples/observability/grafana-dashboard.json" in doc
