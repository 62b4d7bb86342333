"""Vault answers with impossible numbers are typed errors, the lease they created is revoked,
and nothing loops (``../shared/repro/r4_parse.py``).

A minimal stand-in HTTP server on 127.0.0.1 plays Vault's answers (pure logic: parsing and
classification; OpenBao never sends such numbers, which is the point). The lifetime simulation
injects the same answers (``weird_number``) into whole lifetimes.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from vaultdb import CredentialProvider, InvalidResponseError, TokenAuth


class _Handler(http.server.BaseHTTPRequestHandler):
    duration = "0"
    calls: list[str] = []

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _answer(self) -> None:
        path = self.path.split("/v1/", 1)[1]
        type(self).calls.append(path)
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        if path.startswith("auth/token/lookup-self"):
            body = b'{"data": {"accessor": "acc", "ttl": 0, "renewable": false}}'
        elif path.startswith("database/creds/app"):
            body = ('{"lease_id": "database/creds/app/L1", "renewable": true, "lease_duration": '
                    'DURATION, "data": {"username": "u", "password": "p"}}'
                    ).replace("DURATION", self.duration).encode()
        else:
            self.send_response(204)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = do_POST = _answer


@pytest.fixture
def weird_vault() -> Iterator[tuple[str, type[_Handler]]]:
    handler = type("Handler", (_Handler,), {"calls": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()


@pytest.mark.parametrize("duration", ["NaN", "1e20", "-5", '"3600"', '"abc"', "null", "true"])
def test_an_impossible_lease_duration_is_a_typed_error_and_the_lease_is_revoked(
        weird_vault: tuple[str, type[_Handler]], duration: str) -> None:
    addr, handler = weird_vault
    handler.duration = duration
    provider = CredentialProvider("app", auth=TokenAuth(token="t"), vault_addr=addr,
                                  handle_sigterm=False, request_timeout=2)
    with pytest.raises(InvalidResponseError) as info:
        provider.credentials(timeout=5)
    assert "makes no sense" in str(info.value) and not info.value.retryable
    assert handler.calls.count("database/creds/app") == 1  # no fetch loop
    assert handler.calls.count("sys/leases/revoke") == 1   # the lease it created is revoked
    provider.close()
