"""Where ``VaultHTTP`` follows a 307/308, and what it refuses to send, over a fake Exchange.

The exchange is the seam under the transport (pure logic here: which URL, which headers, which
body each hop gets). Real servers answer the same questions in tests/core/test_transport*.py.
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from vaultdb._http import (
    HTTPStatusError,
    RawResponse,
    RedirectRefusedError,
    TransportError,
    VaultHTTP,
)

TOKEN = "hvs.REDIRECT-SECRET-TOKEN"


class Hops:
    """Answers each URL from a table (307 with a Location, or 200 ``{}``) and records hops."""

    def __init__(self, redirects: Mapping[str, str]) -> None:
        self.redirects = dict(redirects)
        self.seen: list[tuple[str, str | None, bytes | None]] = []

    def __call__(self, method: str, url: str, headers: Mapping[str, str],
                 body: bytes | None, *, deadline: float) -> RawResponse:
        self.seen.append((url, headers.get("X-Vault-Token"), body))
        if url in self.redirects:
            return RawResponse(307, {"location": self.redirects[url]}, b"")
        return RawResponse(200, {}, b"{}")


def login(addr: str, hops: Hops, **kwargs: object) -> None:
    http = VaultHTTP(addr, timeout=5, exchange=hops, **kwargs)  # type: ignore[arg-type]
    http.request("POST", "auth/approle/login", token=TOKEN, body={"secret_id": "SECRET-ID"})


def test_relative_and_same_origin_redirects_are_followed_with_token_and_body() -> None:
    hops = Hops({"https://vault:8200/v1/auth/approle/login": "/v1/elsewhere",
                 "https://vault:8200/v1/elsewhere": "https://VAULT:8200/v1/final"})
    login("https://vault:8200", hops)
    assert [url for url, _, _ in hops.seen] == [
        "https://vault:8200/v1/auth/approle/login", "https://vault:8200/v1/elsewhere",
        "https://VAULT:8200/v1/final"]
    assert all(token == TOKEN and body for _, token, body in hops.seen)


@pytest.mark.parametrize("location", [
    "https://other:8200/v1/x",      # another host
    "https://vault:8201/v1/x",      # same host, another port
    "http://vault:8200/v1/x",       # another scheme (a downgrade: the tls error below)
])
def test_a_redirect_elsewhere_is_refused_and_nothing_is_sent_there(location: str) -> None:
    hops = Hops({"https://vault:8200/v1/auth/approle/login": location})
    with pytest.raises(TransportError) as info:
        login("https://vault:8200", hops)
    assert len(hops.seen) == 1
    assert TOKEN not in str(info.value) and "SECRET-ID" not in str(info.value)
    assert info.value.sent is True
    if location.startswith("https://"):
        assert isinstance(info.value, RedirectRefusedError)
        assert "VAULTDB_REDIRECT_HOSTS" in str(info.value)
        assert location.split("/")[2].lower() in str(info.value)
    else:
        assert info.value.kind == "tls"


@pytest.mark.parametrize(("allowed", "followed"), [
    ({"other:8200"}, True), ({"OTHER"}, True), ({" other:8200 "}, True),
    ({"other:9999"}, False), ({"vault2"}, False), (set(), False)])
def test_redirect_hosts_allow_a_host_or_a_host_and_port(allowed: set[str],
                                                        followed: bool) -> None:
    hops = Hops({"http://vault:8200/v1/auth/approle/login": "http://other:8200/v1/x"})
    if followed:
        login("http://vault:8200", hops, redirect_hosts=frozenset(allowed))
        assert hops.seen[1] == ("http://other:8200/v1/x", TOKEN, b'{"secret_id": "SECRET-ID"}')
    else:
        with pytest.raises(RedirectRefusedError):
            login("http://vault:8200", hops, redirect_hosts=frozenset(allowed))
        assert len(hops.seen) == 1


def test_an_allowed_host_is_not_followed_from_https_to_http() -> None:
    hops = Hops({"https://vault:8200/v1/auth/approle/login": "http://other:8200/v1/x"})
    with pytest.raises(TransportError) as info:
        login("https://vault:8200", hops, redirect_hosts=frozenset({"other"}))
    assert info.value.kind == "tls" and len(hops.seen) == 1


def test_a_redirect_loop_ends_after_a_few_hops() -> None:
    hops = Hops({"http://vault:8200/v1/auth/approle/login": "/v1/auth/approle/login"})
    with pytest.raises(HTTPStatusError) as info:
        login("http://vault:8200", hops)
    assert info.value.status == 307
    assert len(hops.seen) == 4


def test_unix_socket_addresses_stay_on_the_socket() -> None:
    """``unix:///run/vault.sock`` travels as ``http+unix://%2Frun%2Fvault.sock``."""
    base = "http+unix://%2Frun%2Fvault.sock"
    hops = Hops({f"{base}/v1/auth/approle/login": "/v1/moved"})
    login("unix:///run/vault.sock", hops)
    assert [url for url, _, _ in hops.seen] == [f"{base}/v1/auth/approle/login",
                                               f"{base}/v1/moved"]
    refused = Hops({f"{base}/v1/auth/approle/login": "http://localhost/v1/x"})
    with pytest.raises(RedirectRefusedError):
        login("unix:///run/vault.sock", refused)


def test_with_client_cert_shares_everything_but_the_certificate() -> None:
    hops = Hops({})
    http = VaultHTTP("https://vault:8200", timeout=7, exchange=hops, namespace="team",
                     redirect_hosts=frozenset({"other"}))
    sibling = http.with_client_cert("/certs/app.pem", "/certs/app.key")
    assert (sibling.addr, sibling.timeout, sibling.namespace, sibling.redirect_hosts) == (
        "https://vault:8200", 7, "team", frozenset({"other"}))
    sibling.request("POST", "auth/cert/login")
    assert hops.seen[0][0] == "https://vault:8200/v1/auth/cert/login"
    assert sibling._client_cert == ("/certs/app.pem", "/certs/app.key")
    assert http._client_cert is None
