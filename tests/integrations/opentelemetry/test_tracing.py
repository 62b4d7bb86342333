"""vaultdb.integrations.opentelemetry against the real stack, spans collected by the SDK's
in-memory exporter.

A provider logs in (Kubernetes auth), fetches, renews, rotates and revokes within seconds;
every step is a span with Vault's status and the role and generation, lease events are span
events on the span of the request that caused them, and no attribute anywhere holds a secret,
username, accessor or lease id.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from vaultdb.integrations.opentelemetry import instrument

from vaultdb import CredentialProvider, KubernetesAuth
from vaultdb import events as ev
from vaultdb.testing import VaultDBStack, wait_for


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracer_provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


@pytest.fixture
def provider(vaultdb_stack: VaultDBStack, vaultdb_role_name: str, tmp_path: Path,
             vaultdb_provider_factory: Callable[..., CredentialProvider]
             ) -> Iterator[CredentialProvider]:
    token = vaultdb_stack.write_service_account_token(tmp_path / "sa" / "token")
    vaultdb_stack.create_kubernetes_role(vaultdb_role_name, token_ttl=60)
    yield vaultdb_provider_factory(
        auth=KubernetesAuth(role=vaultdb_role_name, token_path=str(token)),
        default_ttl=3, max_ttl=6)


def every_value(spans: list[ReadableSpan]) -> list[str]:
    values: list[str] = []
    for span in spans:
        values += [str(v) for v in (span.attributes or {}).values()]
        values += [span.name]
        for event in span.events:
            values += [event.name, *(str(v) for v in (event.attributes or {}).values())]
    return values


def test_spans_for_login_read_renew_rotate_revoke(
        provider: CredentialProvider, tracer_provider: TracerProvider,
        exporter: InMemorySpanExporter, vaultdb_role_name: str) -> None:
    tracing = instrument(provider, tracer_provider=tracer_provider)
    seen: list[ev.LeaseEvent] = []
    provider.subscribe(seen.append)
    app = tracer_provider.get_tracer("app")
    try:
        with app.start_as_current_span("handle request") as request_span:
            first = provider.credentials()
        wait_for(lambda: any(isinstance(e, ev.LeaseRenewed) for e in seen), timeout=20)
        wait_for(lambda: any(isinstance(e, ev.LeaseRevoked) for e in seen), timeout=20)
        provider.close()
    finally:
        tracing.close()
    spans = list(exporter.get_finished_spans())
    by_name: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)
    assert {"vaultdb login", "vaultdb credentials", "vaultdb renew", "vaultdb revoke"} <= set(
        by_name), sorted(by_name)

    login = by_name["vaultdb login"][0]
    read = by_name["vaultdb credentials"][0]
    # The first fetch ran inside the application's span: its spans are children of it.
    assert login.parent is not None and read.parent is not None
    assert login.parent.span_id == request_span.get_span_context().span_id
    assert read.parent.span_id == request_span.get_span_context().span_id
    assert [e.name for e in login.events] == ["vaultdb.login.created"]
    assert read.attributes is not None
    assert read.attributes["http.response.status_code"] == 200
    assert read.attributes["vaultdb.role"] == vaultdb_role_name
    assert read.attributes["vaultdb.generation"] == first.generation == 1
    assert [e.name for e in read.events] == ["vaultdb.lease.created"]

    renew = by_name["vaultdb renew"][0]
    assert renew.attributes is not None and renew.attributes["vaultdb.generation"] == 1
    assert renew.parent is None  # the renewer thread's work is a trace of its own
    assert [e.name for e in renew.events] == ["vaultdb.lease.renewed"]
    rotated = [s for s in by_name["vaultdb credentials"] if any(
        e.name == "vaultdb.lease.rotated" for e in s.events)]
    assert rotated, "a rotation is a credentials span with a rotated event"
    revokes = by_name["vaultdb revoke"]
    assert all(s.attributes and s.attributes["vaultdb.role"] == vaultdb_role_name
               for s in revokes)
    assert all([e.name for e in s.events] == ["vaultdb.lease.revoked"] for s in revokes)

    secrets = {first.password, first.username, str(first.lease_id)}
    secrets |= {e.credentials.password for e in seen if isinstance(e, ev.LeaseCreated)}
    secrets |= {e.credentials.username for e in seen if isinstance(e, ev.LeaseCreated)}
    secrets |= {str(e.credentials.lease_id) for e in seen if isinstance(e, ev.LeaseCreated)}
    secrets |= {e.accessor for e in seen if isinstance(e, ev.LoginCreated)}
    leaked = [v for v in every_value(spans) for s in secrets if s and s in v]
    assert leaked == []


def test_a_refused_request_is_an_error_span(
        vaultdb_stack: VaultDBStack, tracer_provider: TracerProvider,
        exporter: InMemorySpanExporter,
        vaultdb_provider_factory: Callable[..., CredentialProvider]) -> None:
    provider = vaultdb_provider_factory(mount="no-such-mount")
    tracing = instrument(provider, tracer_provider=tracer_provider)
    try:
        with pytest.raises(Exception, match="no-such-mount") as info:
            provider.credentials(timeout=5)
    finally:
        tracing.close()
    failed = [s for s in exporter.get_finished_spans() if s.name == "vaultdb credentials"]
    assert failed and failed[0].status.status_code.name == "ERROR"
    attributes: dict[str, Any] = dict(failed[0].attributes or {})
    assert attributes["error.type"] == type(info.value).__name__  # PermissionDeniedError
    assert attributes["http.response.status_code"] == info.value.status == 403
    # The 403 is followed by a token lookup (is it the token or the policy?), so the error
    # event has no request span to sit on: it gets a span of its own.
    errors = [e for s in exporter.get_finished_spans() for e in s.events
              if e.name == "vaultdb.lease.error"]
    assert errors and errors[0].attributes is not None
    assert errors[0].attributes["error.type"] == type(info.value).__name__


def test_without_the_integration_nothing_of_opentelemetry_is_imported() -> None:
    code = ("import sys\n"
            "import vaultdb, vaultdb.integrations.sqlalchemy, vaultdb.integrations.prometheus\n"
            "from vaultdb import CredentialProvider, TokenAuth\n"
            "CredentialProvider('r', auth=TokenAuth(token='t'), vault_addr='http://127.0.0.1:9',"
            " handle_sigterm=False)\n"
            "import vaultdb._vault as v\n"
            "assert not v._request_observers, v._request_observers\n"
            "found = sorted(m for m in sys.modules if m.startswith('opentelemetry'))\n"
            "assert not found, found\n"
            "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
    import opentelemetry  # noqa: F401  (installed here: the check above could fail)
