"""A minimal Kubernetes API *stand-in* for Vault's kubernetes auth method.

No kube-apiserver can run in the test environment, so this speaks just enough of the real
protocol for an unmodified OpenBao/Vault: HTTPS with a self-signed cluster CA, and
``POST /apis/authentication.k8s.io/v1/tokenreviews`` answering ``authentication.k8s.io/v1``
``TokenReview`` objects exactly as the API server does for service-account tokens. It also
mints service-account JWTs shaped like projected (bound) tokens, so the same tokens work for
``kubernetes`` auth (via TokenReview) and ``jwt`` auth (offline signature check).

It is *not* Kubernetes: no RBAC, no objects. Only what Vault's login path exercises, plus hooks
for fault tests (revoking a token, failing reviews).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import json
import logging
import ssl
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_API_AUDIENCE", "DEFAULT_ISSUER", "KubernetesStandIn"]

logger = logging.getLogger(__name__)

DEFAULT_ISSUER = "https://kubernetes.default.svc.cluster.local"
DEFAULT_API_AUDIENCE = "https://kubernetes.default.svc"
_SA_GROUP = "system:serviceaccounts"
_TOKENREVIEW_PATH = "/apis/authentication.k8s.io/v1/tokenreviews"


def _stable_uid(*parts: str) -> str:
    # Object UIDs must be stable per object (Vault compares the SA UID in the JWT with the one
    # TokenReview reports) yet unique per cluster instance -> uuid5 over a per-instance salt.
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "/".join(parts)))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, addr: tuple[str, int], standin: KubernetesStandIn) -> None:
        self.standin = standin
        super().__init__(addr, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # TLS handshake in the per-connection thread, so one slow client cannot stall accept().
        assert self.standin._ssl_context is not None
        request.settimeout(10)
        try:
            tls = self.standin._ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            logger.debug("TLS handshake from %s failed: %s", client_address, exc)
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            with contextlib.suppress(OSError):
                tls.close()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("k8s stand-in: " + format, *args)

    def _send_json(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _status(self, code: int, reason: str, message: str) -> None:
        self._send_json(
            code,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": message,
                "reason": reason,
                "code": code,
            },
        )

    def do_GET(self) -> None:
        standin = self.server.standin
        if self.path in ("/healthz", "/readyz", "/livez"):
            data = b"ok"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        elif self.path == "/version":
            self._send_json(200, {"major": "1", "minor": "30", "gitVersion": "v1.30.0-vaultdb"})
        elif self.path == "/.well-known/openid-configuration":
            self._send_json(
                200,
                {
                    "issuer": standin.issuer,
                    "jwks_uri": f"{standin.url}/openid/v1/jwks",
                    "response_types_supported": ["id_token"],
                    "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                },
            )
        elif self.path == "/openid/v1/jwks":
            self._send_json(200, {"keys": [standin.jwk()]})
        else:
            self._status(404, "NotFound", f"the server could not find {self.path}")

    def do_POST(self) -> None:
        standin = self.server.standin
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.path.split("?", 1)[0] != _TOKENREVIEW_PATH:
            self._status(404, "NotFound", f"the server could not find {self.path}")
            return
        with standin._lock:
            standin.review_requests += 1
            fail = standin.fail_reviews
        if fail:
            self._status(503, "ServiceUnavailable", "stand-in configured to fail TokenReviews")
            return
        auth = self.headers.get("Authorization", "")
        bearer = auth[7:] if auth.startswith("Bearer ") else ""
        if standin.require_reviewer_auth and not standin.review_token(bearer)["authenticated"]:
            self._status(401, "Unauthorized", "Unauthorized")
            return
        try:
            review = json.loads(raw or b"{}")
            spec = review.get("spec") or {}
            token = str(spec.get("token") or "")
            audiences = spec.get("audiences") or None
        except (ValueError, AttributeError):
            self._status(400, "BadRequest", "invalid TokenReview body")
            return
        status = standin.review_token(token, audiences)
        self._send_json(
            201,
            {
                "kind": "TokenReview",
                "apiVersion": "authentication.k8s.io/v1",
                "metadata": {"creationTimestamp": None},
                "spec": {"token": token, **({"audiences": audiences} if audiences else {})},
                "status": status,
            },
        )


class KubernetesStandIn:
    """HTTPS TokenReview endpoint plus a service-account token issuer.

    ``url``/``ca_pem`` go into Vault's ``auth/kubernetes/config``; ``public_key_pem`` and
    ``issuer`` into ``auth/jwt/config``. Tokens from :meth:`issue_token` carry the claims of a
    projected token (``iss``, ``sub``, ``aud``, ``exp``, ``kubernetes.io``...).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        issuer: str = DEFAULT_ISSUER,
        api_audiences: Sequence[str] = (DEFAULT_API_AUDIENCE,),
    ) -> None:
        self.workdir = Path(workdir)
        self.issuer = issuer
        self.api_audiences = tuple(api_audiences)
        self.require_reviewer_auth = True
        self.fail_reviews = False
        self.review_requests = 0
        self._lock = threading.Lock()
        self._revoked: set[str] = set()
        self._salt = uuid.uuid4().hex
        self._ssl_context: ssl.SSLContext | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._signing_key: Any = None
        self._kid = ""
        self.ca_pem = ""
        self.public_key_pem = ""
        self.port = 0

    def __repr__(self) -> str:
        return f"KubernetesStandIn(url={self.url!r})"

    @property
    def url(self) -> str:
        """``https://127.0.0.1:PORT`` -- Vault's ``kubernetes_host``."""
        return f"https://127.0.0.1:{self.port}"

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Generate keys/certificates and serve HTTPS on a kernel-chosen port."""
        if self._server is not None:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._generate_keys()
        self._server = _Server(("127.0.0.1", 0), self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"vaultdb-k8s-standin-{self.port}",
            daemon=True,
        )
        self._thread.start()
        logger.info("Kubernetes stand-in serving at %s", self.url)

    def stop(self) -> None:
        """Shut the server thread down. Idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _generate_keys(self) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec, rsa
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        now = dt.datetime.now(dt.timezone.utc)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vaultdb-test-kubernetes-ca")])
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        server_key = ec.generate_private_key(ec.SECP256R1())
        import ipaddress

        server_cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
            .issuer_name(ca_name)
            .public_key(server_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=7))
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
                        x509.DNSName("localhost"),
                        x509.DNSName("kubernetes.default.svc"),
                    ]
                ),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        pem = serialization.Encoding.PEM
        self.ca_pem = ca_cert.public_bytes(pem).decode()
        cert_path = self.workdir / "kube-apiserver.crt"
        key_path = self.workdir / "kube-apiserver.key"
        cert_path.write_bytes(server_cert.public_bytes(pem))
        key_path.touch(mode=0o600)
        key_path.write_bytes(
            server_key.private_bytes(
                pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        (self.workdir / "kube-ca.crt").write_text(self.ca_pem)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(cert_path, key_path)
        self._ssl_context = ctx

        self._signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = self._signing_key.public_key()
        self.public_key_pem = public.public_bytes(
            pem, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()
        der = public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        # Same key-id scheme as kube-apiserver: base64url(sha256(DER public key)).
        self._kid = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).decode().rstrip("=")

    # ---------------------------------------------------------------- tokens

    def service_account_uid(self, namespace: str, name: str) -> str:
        """The (stable) UID of service account *namespace*/*name* in this fake cluster."""
        return _stable_uid(self._salt, "serviceaccount", namespace, name)

    def jwk(self) -> dict[str, Any]:
        """Public signing key as a JWK (served at ``/openid/v1/jwks`` like the real thing)."""
        from jwt.algorithms import RSAAlgorithm

        key: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(self._signing_key.public_key()))
        key.update({"kid": self._kid, "use": "sig", "alg": "RS256"})
        return key

    def issue_token(
        self,
        service_account: str = "app",
        namespace: str = "default",
        ttl: int = 3600,
        audiences: Iterable[str] = (DEFAULT_API_AUDIENCE,),
        pod_name: str | None = None,
    ) -> str:
        """Mint a projected-style service-account token (RS256).

        A non-positive *ttl* yields an already-expired token, for expiry tests.
        """
        import jwt

        if self._signing_key is None:
            raise RuntimeError("KubernetesStandIn.start() has not been called")
        now = int(time.time())
        iat = min(now, now + ttl - 60) if ttl <= 0 else now
        pod = pod_name or f"{service_account}-{uuid.uuid4().hex[:5]}"
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": f"system:serviceaccount:{namespace}:{service_account}",
            "aud": list(audiences),
            "iat": iat,
            "nbf": iat,
            "exp": now + ttl,
            "jti": str(uuid.uuid4()),
            "kubernetes.io": {
                "namespace": namespace,
                "serviceaccount": {
                    "name": service_account,
                    "uid": self.service_account_uid(namespace, service_account),
                },
                "pod": {"name": pod, "uid": _stable_uid(self._salt, "pod", namespace, pod)},
            },
        }
        return jwt.encode(claims, self._signing_key, algorithm="RS256", headers={"kid": self._kid})

    def revoke_token(self, token: str) -> None:
        """Make TokenReview reject *token* from now on (like deleting its pod/secret)."""
        with self._lock:
            self._revoked.add(hashlib.sha256(token.encode()).hexdigest())

    def review_token(self, token: str, audiences: Sequence[str] | None = None) -> dict[str, Any]:
        """The ``status`` a kube-apiserver would return for a TokenReview of *token*.

        As in Kubernetes, without ``spec.audiences`` the API server's own audiences apply,
        so a token minted only for ``vault`` is rejected unless the reviewer asks for it.
        """
        import jwt

        wanted = list(audiences) if audiences else list(self.api_audiences)
        denied: dict[str, Any] = {"authenticated": False, "user": {}, "error": ""}
        if not token or self._signing_key is None:
            denied["error"] = "token is empty"
            return denied
        with self._lock:
            revoked = hashlib.sha256(token.encode()).hexdigest() in self._revoked
        if revoked:
            denied["error"] = "service account token has been invalidated"
            return denied
        try:
            claims = jwt.decode(
                token,
                self._signing_key.public_key(),
                algorithms=["RS256"],
                issuer=self.issuer,
                options={"verify_aud": False, "require": ["exp", "iat", "sub", "aud"]},
            )
        except jwt.PyJWTError as exc:
            denied["error"] = f"invalid bearer token: {exc}"
            return denied
        token_aud = claims.get("aud")
        token_auds = [token_aud] if isinstance(token_aud, str) else list(token_aud or [])
        matched = [a for a in wanted if a in token_auds]
        if not matched:
            denied["error"] = "token audiences do not match the requested audiences"
            return denied
        k8s = claims.get("kubernetes.io") or {}
        namespace = str(k8s.get("namespace", ""))
        sa = k8s.get("serviceaccount") or {}
        pod = k8s.get("pod") or {}
        extra: dict[str, list[str]] = {
            "authentication.kubernetes.io/credential-id": [f"JTI={claims.get('jti', '')}"],
        }
        if pod:
            extra["authentication.kubernetes.io/pod-name"] = [str(pod.get("name", ""))]
            extra["authentication.kubernetes.io/pod-uid"] = [str(pod.get("uid", ""))]
        return {
            "authenticated": True,
            "user": {
                "username": f"system:serviceaccount:{namespace}:{sa.get('name', '')}",
                "uid": str(sa.get("uid", "")),
                "groups": [_SA_GROUP, f"{_SA_GROUP}:{namespace}", "system:authenticated"],
                "extra": extra,
            },
            "audiences": matched,
        }
