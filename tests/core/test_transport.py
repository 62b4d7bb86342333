"""The standard-library HTTP transport against real OpenBao: TLS, proxies, redirects, imports.

OpenBao runs for real (``-dev-tls`` for the TLS cases). The forward proxy and the redirecting
front below are minimal stand-ins speaking plain HTTP/1.1 (absolute-URI requests, CONNECT
tunnels, 307 answers); no real proxy server can be installed here.
"""

from __future__ import annotations

import http.server
import select
import socket
import socketserver
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from vaultdb import TokenAuth
from vaultdb._http import HTTPStatusError, VaultHTTP
from vaultdb._vault import VaultClient, VaultSettings
from vaultdb.errors import TLSConfigurationError, VaultDBError, VaultUnavailableError
from vaultdb.testing import VaultDBStack
from vaultdb.testing._openbao import OpenBaoServer


@pytest.fixture(scope="module")
def tls_vault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBaoServer]:
    server = OpenBaoServer(tmp_path_factory.mktemp("openbao-tls"), tls=True)
    server.start()
    yield server
    server.stop()


def client(addr: str, **settings: object) -> VaultClient:
    return VaultClient(VaultSettings(addr=addr, timeout=3, **settings))  # type: ignore[arg-type]


# -- TLS -----------------------------------------------------------------------------------------

def test_unknown_ca_is_a_tls_error_naming_vault_cacert(tls_vault: OpenBaoServer) -> None:
    with pytest.raises(TLSConfigurationError) as info:
        client(tls_vault.addr).health()
    assert "VAULT_CACERT" in str(info.value)
    assert "CERTIFICATE_VERIFY_FAILED" in str(info.value) or "certificate" in str(info.value)


def test_ca_bundle_verifies_and_token_login_works(tls_vault: OpenBaoServer) -> None:
    vault = client(tls_vault.addr, verify=str(tls_vault.ca_cert))
    assert vault.health().initialized
    login = vault.login(TokenAuth(token=tls_vault.root_token))
    assert login.owned is False
    assert "root" in vault.lookup_self().policies


def test_vault_cacert_and_skip_verify_from_the_environment(
        tls_vault: OpenBaoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAULT_CACERT", str(tls_vault.ca_cert))
    assert VaultClient(VaultSettings.resolve(tls_vault.addr)).health().initialized
    monkeypatch.delenv("VAULT_CACERT")
    monkeypatch.setenv("VAULT_SKIP_VERIFY", "true")
    assert VaultClient(VaultSettings.resolve(tls_vault.addr)).health().initialized


def test_host_name_in_the_certificate_is_checked(tls_vault: OpenBaoServer) -> None:
    """The dev certificate names localhost; any other name fails the check, not the call."""
    by_name = tls_vault.addr.replace("127.0.0.1", "localhost")
    assert client(by_name, verify=str(tls_vault.ca_cert)).health().initialized


def test_missing_client_certificate_is_a_tls_error(tls_vault: OpenBaoServer,
                                                  tmp_path: Path) -> None:
    vault = client(tls_vault.addr, verify=str(tls_vault.ca_cert),
                   client_cert=(str(tmp_path / "nope.pem"), str(tmp_path / "nope.key")))
    with pytest.raises(TLSConfigurationError) as info:
        vault.health()
    assert "VAULT_CLIENT_CERT" in str(info.value)


def test_plain_http_to_a_tls_listener_says_use_https(tls_vault: OpenBaoServer) -> None:
    with pytest.raises(TLSConfigurationError) as info:
        client(tls_vault.addr.replace("https://", "http://")).health()
    assert "VAULT_ADDR must use https://" in str(info.value)


# -- proxies -------------------------------------------------------------------------------------

class ForwardProxy(socketserver.ThreadingTCPServer):
    """A minimal HTTP forward proxy stand-in: absolute-URI requests and CONNECT tunnels."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.authorizations: list[str | None] = []
        super().__init__(("127.0.0.1", 0), _ProxyHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    server: ForwardProxy

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_CONNECT(self) -> None:
        self.server.seen.append(f"CONNECT {self.path}")
        self.server.authorizations.append(self.headers.get("Proxy-Authorization"))
        host, port = self.path.rsplit(":", 1)
        upstream = socket.create_connection((host, int(port)), timeout=5)
        self.send_response(200, "Connection established")
        self.end_headers()
        sockets = [self.connection, upstream]
        while True:
            readable, _, _ = select.select(sockets, [], [], 5)
            if not readable:
                break
            for sock in readable:
                data = sock.recv(65536)
                if not data:
                    upstream.close()
                    return
                (upstream if sock is self.connection else self.connection).sendall(data)

    def _forward(self) -> None:
        self.server.seen.append(f"{self.command} {self.path}")
        self.server.authorizations.append(self.headers.get("Proxy-Authorization"))
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in ("host", "proxy-authorization")}
        request = urllib.request.Request(self.path, data=body, headers=headers,
                                         method=self.command)
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                status, payload = answer.status, answer.read()
        except urllib.error.HTTPError as exc:
            status, payload = exc.code, exc.read()
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = _forward


@pytest.fixture
def forward_proxy() -> Iterator[ForwardProxy]:
    proxy = ForwardProxy()
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    yield proxy
    proxy.shutdown()
    proxy.server_close()


def test_http_proxy_is_honoured_and_no_proxy_bypasses_it(
        vaultdb_stack: VaultDBStack, forward_proxy: ForwardProxy,
        monkeypatch: pytest.MonkeyPatch) -> None:
    token = vaultdb_stack.create_token()
    monkeypatch.setenv("HTTP_PROXY", forward_proxy.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    vault = client(vaultdb_stack.vault_addr)
    vault.login(TokenAuth(token=token))
    assert forward_proxy.seen == [
        f"GET {vaultdb_stack.vault_addr}/v1/auth/token/lookup-self"]
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    vault.health()
    assert len(forward_proxy.seen) == 1


def test_https_proxy_tunnels_with_connect(tls_vault: OpenBaoServer, forward_proxy: ForwardProxy,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", forward_proxy.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert client(tls_vault.addr, verify=str(tls_vault.ca_cert)).health().initialized
    assert forward_proxy.seen == [f"CONNECT 127.0.0.1:{tls_vault.port}"]


def test_proxy_credentials_in_the_url_authenticate_both_ways(
        vaultdb_stack: VaultDBStack, tls_vault: OpenBaoServer, forward_proxy: ForwardProxy,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import base64

    with_user = forward_proxy.url.replace("http://", "http://ops:s%40cret@")
    monkeypatch.setenv("HTTP_PROXY", with_user)
    monkeypatch.setenv("HTTPS_PROXY", with_user)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    client(vaultdb_stack.vault_addr).health()
    vault = client(tls_vault.addr, verify=str(tls_vault.ca_cert))
    vault.health()
    expected = "Basic " + base64.b64encode(b"ops:s@cret").decode()
    assert forward_proxy.authorizations == [expected, expected]


def test_unreachable_proxy_is_unavailable_and_never_sent(
        vaultdb_stack: VaultDBStack, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    monkeypatch.setenv("HTTP_PROXY", f"http://ops:proxy-secret@127.0.0.1:{dead}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with pytest.raises(VaultUnavailableError) as info:
        client(vaultdb_stack.vault_addr).health()
    assert info.value.request_sent is False
    assert "proxy-secret" not in f"{info.value!s} {info.value!r}"


# -- redirects (a standby node answering 307) ----------------------------------------------------

@pytest.fixture
def redirecting_front(vaultdb_stack: VaultDBStack) -> Iterator[str]:
    """Answers every request with 307 to the real server, as a Vault standby node can."""
    target = vaultdb_stack.vault_addr

    class Redirect(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def _redirect(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            self.send_response(307)
            self.send_header("Location", f"{target}{self.path}")
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = do_PUT = _redirect

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_307_to_an_allowed_host_keeps_method_and_body(
        vaultdb_stack: VaultDBStack, redirecting_front: str) -> None:
    """Through the front (another port, so another origin) once ``redirect_hosts`` allows
    Vault's: login check (GET), credentials (GET), revoke (PUT with a body) all reach OpenBao."""
    role = "transport-307"
    vaultdb_stack.create_database_role(role, default_ttl=60, max_ttl=120)
    token = vaultdb_stack.create_token()
    vault_port = vaultdb_stack.vault_addr.rsplit(":", 1)[1]
    http = VaultHTTP(redirecting_front, timeout=5,
                     redirect_hosts=frozenset({f"127.0.0.1:{vault_port}"}))
    assert http.request("GET", "auth/token/lookup-self", token=token).data["data"]["ttl"] > 0
    creds = http.request("GET", f"database/creds/{role}", token=token).data
    assert creds["data"]["username"] in vaultdb_stack.dynamic_db_roles()
    http.request("PUT", "sys/leases/revoke", token=token, body={"lease_id": creds["lease_id"]})
    assert creds["data"]["username"] not in vaultdb_stack.dynamic_db_roles()


def test_307_to_another_port_is_refused_naming_the_setting(
        vaultdb_stack: VaultDBStack, redirecting_front: str) -> None:
    vault = VaultClient(VaultSettings(addr=redirecting_front, timeout=3), attempts=1)
    with pytest.raises(VaultDBError) as info:
        vault.login(TokenAuth(token=vaultdb_stack.create_token()))
    assert "VAULTDB_REDIRECT_HOSTS" in str(info.value)


# -- import cost ---------------------------------------------------------------------------------

def test_importing_vaultdb_does_not_import_requests_or_hvac() -> None:
    """requests alone costs more start-up time than a login and a credentials read.

    tenacity, the one retry library, is imported on the first failed Vault call only.
    """
    code = ("import sys, vaultdb, vaultdb.integrations.sqlalchemy, vaultdb.integrations.psycopg;"
            "print(sorted(m for m in ('requests', 'hvac', 'urllib3', 'urllib.request')"
            " if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert out.strip() == "[]"


def test_a_cold_start_that_goes_well_does_not_import_idna_or_tenacity(
        vaultdb_stack: VaultDBStack) -> None:
    """ASCII host names skip the idna codec (over a millisecond of a cold start), and calls
    that succeed at once never import tenacity (4.5 ms)."""
    code = ("import sys, vaultdb; from vaultdb._vault import VaultClient, VaultSettings;"
            "c = VaultClient(VaultSettings.resolve());"
            "c.login(vaultdb.TokenAuth()); c.lookup_self();"
            "print(sorted(m for m in ('encodings.idna', 'tenacity') if m in sys.modules))")
    env = vaultdb_stack.env(include_root_token=True)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_ca_directory_from_vault_capath(tls_vault: OpenBaoServer, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil
    import ssl

    if shutil.which("openssl") is None:
        pytest.skip("the c_rehash file name needs the openssl command to compute")
    capath = tmp_path / "cas"
    capath.mkdir()
    # The c_rehash layout: <subject hash>.0 -> the PEM.
    pem = Path(str(tls_vault.ca_cert)).read_text()
    der = ssl.PEM_cert_to_DER_cert(pem)
    subject_hash = subprocess.run(["openssl", "x509", "-noout", "-subject_hash"], input=pem,
                                  capture_output=True, text=True, check=True).stdout.strip()
    (capath / f"{subject_hash}.0").write_text(ssl.DER_cert_to_PEM_cert(der))
    monkeypatch.setenv("VAULT_CAPATH", str(capath))
    assert VaultClient(VaultSettings.resolve(tls_vault.addr)).health().initialized


def test_unreadable_ca_bundle_is_a_tls_error(tls_vault: OpenBaoServer, tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    with pytest.raises(TLSConfigurationError) as info:
        client(tls_vault.addr, verify=str(bad)).health()
    assert "CA certificates" in str(info.value)


# -- name resolution -----------------------------------------------------------------------------

def test_a_host_name_is_resolved_and_every_address_is_tried(vaultdb_stack: VaultDBStack) -> None:
    """``localhost`` may resolve to ::1 first; OpenBao listens on 127.0.0.1 only."""
    port = vaultdb_stack.vault_addr.rsplit(":", 1)[1]
    assert client(f"http://localhost:{port}").health().initialized


def test_an_unknown_host_name_says_name_resolution_failed() -> None:
    with pytest.raises(VaultUnavailableError) as info:
        client("http://vault.does-not-exist.invalid:8200").health()
    assert "name resolution failed" in str(info.value)
    assert "DNS" in str(info.value)


def test_a_dead_dns_server_times_out_instead_of_hanging(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """getaddrinfo has no timeout; with DNS down it blocks for the resolver's retries.

    The resolver is replaced by one that never answers for ``vault.internal`` (a fake of the
    operating system's resolver: no DNS server can be made to stall here). If vaultdb waited
    for it, this test would hang until pytest-timeout.
    """
    import socket

    never = threading.Event()
    real_getaddrinfo = socket.getaddrinfo

    def stalled(host: object, *args: object, **kwargs: object) -> object:
        if host in ("vault.internal", b"vault.internal"):
            never.wait()
        return real_getaddrinfo(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", stalled)
    try:
        vault = VaultClient(VaultSettings(addr="http://vault.internal:8200", timeout=0.5),
                            attempts=1)
        with pytest.raises(VaultUnavailableError) as info:
            vault.health()
        assert "no answer from DNS within 0.5s" in str(info.value)
        assert info.value.retryable and not info.value.request_sent
    finally:
        never.set()  # lets the abandoned lookup thread end


# -- https:// proxies (shared/repro/r6_proxy.py) -------------------------------------------------

class TLSForwardProxy(ForwardProxy):
    """The forward proxy stand-in behind TLS, with OpenBao's dev certificate (127.0.0.1)."""

    def __init__(self, cert_dir: Path) -> None:
        import ssl

        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert_dir / "vault-cert.pem", cert_dir / "vault-key.pem")
        super().__init__()

    def get_request(self) -> tuple[socket.socket, object]:
        sock, address = super().get_request()
        return self.context.wrap_socket(sock, server_side=True), address

    @property
    def url(self) -> str:
        return f"https://ops:s%40cret@127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def tls_proxy(tls_vault: OpenBaoServer, monkeypatch: pytest.MonkeyPatch
              ) -> Iterator[TLSForwardProxy]:
    proxy = TLSForwardProxy(Path(str(tls_vault.ca_cert)).parent)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    yield proxy
    proxy.shutdown()
    proxy.server_close()


def test_https_proxy_url_speaks_tls_to_the_proxy_then_tunnels_tls_to_vault(
        tls_vault: OpenBaoServer, tls_proxy: TLSForwardProxy,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """TLS inside TLS: the tunnel to Vault runs through the TLS session with the proxy."""
    import base64

    monkeypatch.setenv("HTTPS_PROXY", tls_proxy.url)
    vault = client(tls_vault.addr, verify=str(tls_vault.ca_cert))
    assert vault.login(TokenAuth(token=tls_vault.root_token)).owned is False
    assert tls_proxy.seen == [f"CONNECT 127.0.0.1:{tls_vault.port}"]
    assert tls_proxy.authorizations == ["Basic " + base64.b64encode(b"ops:s@cret").decode()]


def test_plain_http_vault_through_an_https_proxy(
        vaultdb_stack: VaultDBStack, tls_vault: OpenBaoServer, tls_proxy: TLSForwardProxy,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", tls_proxy.url)
    assert client(vaultdb_stack.vault_addr, verify=str(tls_vault.ca_cert)).health().initialized
    assert len(tls_proxy.seen) == 1
    assert tls_proxy.seen[0].startswith(f"GET {vaultdb_stack.vault_addr}/v1/sys/health")


def test_https_proxy_with_an_unknown_certificate_is_a_tls_error_naming_the_proxy(
        tls_vault: OpenBaoServer, tls_proxy: TLSForwardProxy,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", tls_proxy.url)
    with pytest.raises(TLSConfigurationError) as info:
        client(tls_vault.addr).health()  # the system CAs do not know OpenBao's dev CA
    assert "proxy" in str(info.value) and "s@cret" not in str(info.value)
    assert tls_proxy.seen == []


def test_https_proxy_credentials_never_cross_the_network_in_clear(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """What r6_proxy.py showed: the proxy got ``CONNECT`` and Basic credentials in clear."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    got: list[bytes] = []

    def capture() -> None:
        conn, _ = server.accept()
        conn.settimeout(5)
        with conn:
            got.append(conn.recv(65536))

    thread = threading.Thread(target=capture, daemon=True)
    thread.start()
    monkeypatch.setenv("HTTPS_PROXY", f"https://alice:s3cret@127.0.0.1:{server.getsockname()[1]}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with pytest.raises(VaultDBError):
        VaultClient(VaultSettings(addr="https://vault.example.test:8200", timeout=3),
                    attempts=1).health()
    thread.join(5)
    server.close()
    assert got and got[0][:1] == b"\x16"  # a TLS ClientHello, not "CONNECT ..."
    assert b"s3cret" not in got[0] and b"YWxpY2U6czNjcmV0" not in got[0]


# -- Unix-socket addresses -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def unix_vault() -> Iterator[tuple[str, str]]:
    """A real OpenBao dev server with a second listener on a Unix socket (``listener "unix"``).

    Yields ``(socket path, root token)``. The socket lives under a short /tmp directory:
    AF_UNIX paths are limited to ~107 bytes, which pytest's tmp_path can exceed.
    """
    import shutil
    import tempfile

    from vaultdb.testing import wait_for
    from vaultdb.testing._openbao import find_bao_binary
    from vaultdb.testing._ports import free_port

    workdir = Path(tempfile.mkdtemp(prefix="vdb-unix-"))
    sock = workdir / "bao.sock"
    (workdir / "unix.hcl").write_text(
        f'listener "unix" {{\n  address = "{sock}"\n}}\ndisable_mlock = true\n')
    root = "root-unix-transport"
    with open(workdir / "openbao.log", "wb") as log:
        proc = subprocess.Popen(
            [find_bao_binary(), "server", "-dev", f"-dev-root-token-id={root}",
             f"-dev-listen-address=127.0.0.1:{free_port()}", "-dev-no-store-token",
             f"-config={workdir / 'unix.hcl'}"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    try:
        wait_for(lambda: proc.poll() is not None or _answers(str(sock)), timeout=30)
        assert proc.poll() is None, (workdir / "openbao.log").read_text()[-2000:]
        yield str(sock), root
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


def _answers(path: str) -> bool:
    try:
        VaultHTTP(f"unix://{path}", timeout=1).request("GET", "sys/health")
    except Exception:
        return False
    return True


def test_unix_socket_address_reaches_openbao(unix_vault: tuple[str, str]) -> None:
    path, root = unix_vault
    http = VaultHTTP(f"unix://{path}", timeout=5)
    assert http.request("GET", "sys/health").data["initialized"] is True
    found = http.request("GET", "auth/token/lookup-self", token=root).data["data"]
    assert "root" in found["policies"]
    vault = VaultClient(VaultSettings(addr=f"unix://{path}", timeout=5))
    assert vault.login(TokenAuth(token=root)).owned is False


def test_a_missing_unix_socket_is_unreachable_and_never_sent(tmp_path: Path) -> None:
    vault = VaultClient(VaultSettings(addr=f"unix://{tmp_path}/nothing.sock", timeout=2),
                        attempts=1)
    with pytest.raises(VaultUnavailableError) as info:
        vault.health()
    assert info.value.request_sent is False


# -- a client certificate for one login ----------------------------------------------------------

def test_with_client_cert_logs_in_with_cert_auth(tls_vault: OpenBaoServer,
                                                 tmp_path: Path) -> None:
    """OpenBao's cert auth method trusts a self-signed certificate made here; only the
    sibling made by ``with_client_cert`` presents it."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vaultdb-app")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM)
    (tmp_path / "app.pem").write_bytes(pem)
    (tmp_path / "app.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    root = tls_vault.client()
    if "cert/" not in root.sys.list_auth_methods()["data"]:
        root.sys.enable_auth_method("cert")
    root.write("auth/cert/certs/app", certificate=pem.decode(), token_policies="default")

    http = VaultHTTP(tls_vault.addr, timeout=5, verify=str(tls_vault.ca_cert))
    with_cert = http.with_client_cert(str(tmp_path / "app.pem"), str(tmp_path / "app.key"))
    login = with_cert.request("POST", "auth/cert/login", body={"name": "app"}).data
    assert login["auth"]["client_token"] and login["auth"]["policies"] == ["default"]
    with pytest.raises(HTTPStatusError):  # the parent presents no certificate
        http.request("POST", "auth/cert/login", body={"name": "app"})
