"""Login methods: one small class each, holding settings only.

Each method builds the body of ``POST auth/<mount>/login``; :mod:`vaultdb._vault` sends it.
Token and JWT files are re-read at every login, because Kubernetes rewrites projected
service-account tokens before they expire and Vault Agent rewrites its sink file.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import os
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ._secret import Secret
from .errors import ConfigurationError, VaultUnavailableError, WrappingTokenUsedError

if TYPE_CHECKING:
    from ._login import LoginContext
    from ._vault import LoginResult

__all__ = [
    "DEFAULT_SA_TOKEN_PATH",
    "AppRoleAuth",
    "AuthBase",
    "AuthMethod",
    "CertAuth",
    "JWTAuth",
    "KubernetesAuth",
    "ProxyAuth",
    "Secret",
    "TokenAuth",
    "auth_from_env",
    "jwt_claims",
    "jwt_expiry",
]

logger = logging.getLogger(__name__)

DEFAULT_SA_TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount/token"


@runtime_checkable
class AuthMethod(Protocol):
    """What the provider needs from a login method.

    This much is enough for a login that posts ``login_payload()`` to
    ``auth/<mount>/login``. A method that needs more (a client certificate, an unwrap first,
    a token lookup, no token at all) also has a ``login(vault)`` hook: see :class:`AuthBase`.
    """

    @property
    def method(self) -> str: ...

    @property
    def mount(self) -> str: ...

    def login_payload(self) -> dict[str, str]: ...

    def describe(self) -> str: ...

    def login_hint(self) -> str: ...


class AuthBase:
    """Defaults for a login method; subclass it (as a frozen dataclass) and override what differs.

    :meth:`login` is the hook :class:`vaultdb._vault.VaultClient` calls: it gets a
    :class:`~vaultdb._login.LoginContext` (``vault``) and returns what one of its calls
    returned: ``vault.login(path, payload, client_cert=...)``, ``vault.lookup_token(token)``
    or ``vault.no_token()``; ``vault.unwrap(token, key)`` may come first. Hold secrets in
    :class:`Secret` (a login body may contain ``Secret`` values): error trackers capture the
    local variables of the frames an error passes through, and a ``Secret`` shows as ``***``.
    Methods without the hook (only ``login_payload``) keep working as before.
    """

    method: str
    mount: str

    def login_payload(self) -> dict[str, Any]:
        return {}

    def login_path(self) -> str:
        return f"auth/{self.mount}/login"

    def describe(self) -> str:
        return f"{self.method} auth at auth/{self.mount}"

    def login_hint(self) -> str:
        return f"that auth method {self.method!r} is enabled at auth/{self.mount} and accepts " \
            "this login"

    def login(self, vault: LoginContext) -> LoginResult:
        return vault.login(self.login_path(), self.login_payload)


def _clean(value: str, what: str, setting: str, *, header: bool = False) -> str:
    """Strip the whitespace around a secret, as a file or a Kubernetes Secret made
    ``--from-file`` leaves it (a trailing newline). A value that travels in an HTTP header
    (a token, a JWT) must then be visible ASCII; the error never shows the value."""
    cleaned = value.strip()
    if not cleaned:
        raise ConfigurationError(f"The {what} is empty.", hint=setting)
    if header and not (cleaned.isascii() and cleaned.isprintable() and " " not in cleaned):
        raise ConfigurationError(
            f"The {what} contains whitespace, control or non-ASCII characters, which a valid "
            "one never has (two values in one, or a stray character?).", hint=setting)
    return cleaned


def _read_secret_file(path: str | os.PathLike[str], what: str, setting: str, *,
                      header: bool = False) -> str:
    """Read a token-like file fresh, with errors that say what to check (never the content)."""
    p = Path(path)
    try:
        value = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigurationError(
            f"The {what} file {str(p)!r} does not exist.",
            hint=f"{setting}; on Kubernetes, that the service account token is mounted "
            "(automountServiceAccountToken, or a projected volume)",
        ) from None
    except PermissionError:
        raise ConfigurationError(
            f"The {what} file {str(p)!r} is not readable by this process.",
            hint=f"{setting} and the file's permissions (fsGroup / runAsUser)",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigurationError(
            f"The {what} file {str(p)!r} could not be read ({reason}).", hint=setting
        ) from None
    return _clean(value, f"{what} file {str(p)!r}", setting, header=header)


def jwt_claims(token: str, *, source: str = "the JWT", setting: str = "the JWT's source"
               ) -> dict[str, Any]:
    """The claims of a JWT, unverified (Vault verifies them): the one place JWTs are decoded.

    Used for early, clear errors (an expired or malformed token) and for ``vaultdb check``'s
    summary. Raises :class:`ConfigurationError` naming ``setting``, never showing the token.
    """
    parts = token.split(".")
    if len(parts) != 3:
        raise ConfigurationError(f"The JWT from {source} is not a JWT (three dot-separated "
                                 "parts).", hint=setting)
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:  # binascii.Error, UnicodeDecodeError and JSONDecodeError alike
        claims = None
    if not isinstance(claims, dict):
        raise ConfigurationError(f"The JWT from {source} is not a JWT: its middle part is not "
                                 "base64url-encoded JSON claims.", hint=setting)
    return claims


def jwt_expiry(token: str, *, source: str = "the JWT", setting: str = "the JWT's source"
               ) -> float | None:
    """The ``exp`` claim of a JWT (unverified; Vault verifies), or ``None`` if absent.

    An ``exp`` that is not a finite number of seconds is a :class:`ConfigurationError`.
    """
    exp = jwt_claims(token, source=source, setting=setting).get("exp")
    if exp is None:
        return None
    try:
        if isinstance(exp, bool) or not isinstance(exp, (int, float)):
            raise TypeError
        value = float(exp)
    except (TypeError, OverflowError):
        value = math.nan
    if not math.isfinite(value):
        raise ConfigurationError(
            f"The JWT from {source} has an 'exp' claim that is not a number of seconds "
            f"(a {type(exp).__name__}).", hint=f"{setting}; the issuer of the token")
    return value


def _check_jwt(token: str, source: str, setting: str) -> str:
    token = _clean(token, f"JWT from {source}", setting, header=True)
    exp = jwt_expiry(token, source=source, setting=setting)
    if exp is not None and exp < time.time():
        raise ConfigurationError(
            f"The JWT from {source} expired {int(time.time() - exp)} s ago.",
            hint=f"{setting}; the kubelet normally rewrites projected tokens before they expire: "
            "is the volume projected, and is the file the current one?",
        )
    return token


@dataclass(frozen=True)
class KubernetesAuth:
    """Kubernetes auth: the pod's service-account JWT, reviewed by Vault via TokenReview."""

    role: str
    mount: str = "kubernetes"
    token_path: str = DEFAULT_SA_TOKEN_PATH
    method: str = field(default="kubernetes", init=False)

    def login_payload(self) -> dict[str, str]:
        setting = "VAULTDB_TOKEN_PATH (token_path)"
        jwt = _read_secret_file(self.token_path, "service-account token", setting, header=True)
        return {"role": self.role, "jwt": _check_jwt(jwt, repr(self.token_path), setting)}

    def describe(self) -> str:
        return f"kubernetes auth at auth/{self.mount}, role {self.role!r}"

    def login_hint(self) -> str:
        return (f"that auth method 'kubernetes' is enabled at auth/{self.mount}, role "
                f"{self.role!r} exists and binds this pod's service account and namespace "
                "(and audience), and Vault can reach the Kubernetes API for TokenReview")


@dataclass(frozen=True)
class JWTAuth:
    """JWT/OIDC auth with a JWT from a file (re-read each login) or given directly."""

    role: str
    mount: str = "jwt"
    token_path: str | None = None
    jwt: str | None = field(default=None, repr=False)
    method: str = field(default="jwt", init=False)

    def __post_init__(self) -> None:
        if not self.token_path and not self.jwt:
            raise ConfigurationError("JWTAuth needs token_path= or jwt=.",
                                     hint="VAULTDB_TOKEN_PATH or the jwt argument")

    def login_payload(self) -> dict[str, str]:
        if self.token_path:
            setting = "VAULTDB_TOKEN_PATH (token_path)"
            jwt = _read_secret_file(self.token_path, "JWT", setting, header=True)
            source = repr(self.token_path)
        else:
            jwt, source, setting = str(self.jwt), "the jwt argument", "the jwt argument"
        return {"role": self.role, "jwt": _check_jwt(jwt, source, setting)}

    def describe(self) -> str:
        return f"jwt auth at auth/{self.mount}, role {self.role!r}"

    def login_hint(self) -> str:
        return (f"that auth method 'jwt' is enabled at auth/{self.mount} with the issuer's keys, "
                f"and role {self.role!r} matches the token's audience, subject and claims")


@dataclass(frozen=True)
class AppRoleAuth:
    """AppRole auth: a role id plus a secret id (given, or read from a file each login)."""

    role_id: str
    secret_id: str | None = field(default=None, repr=False)
    secret_id_path: str | None = None
    mount: str = "approle"
    method: str = field(default="approle", init=False)
    #: A response-wrapping token whose wrapped answer holds the secret id, given directly...
    wrapped_secret_id: str | None = field(default=None, repr=False)
    #: ...or read from a file at every login (the delivery system writes a fresh one).
    wrapped_secret_id_path: str | None = None
    #: SHA-256 digests of wrapping tokens this object unwrapped (never the tokens).
    _unwrapped: set[str] = field(default_factory=set, init=False, repr=False, compare=False)

    def login_payload(self) -> dict[str, str]:
        payload = {"role_id": _clean(self.role_id, "AppRole role id",
                                     "VAULTDB_ROLE_ID (role_id)")}
        if self.secret_id_path:
            payload["secret_id"] = _read_secret_file(
                self.secret_id_path, "AppRole secret id", "VAULTDB_SECRET_ID_PATH (secret_id_path)")
        elif self.secret_id:
            payload["secret_id"] = _clean(self.secret_id, "AppRole secret id",
                                          "VAULTDB_SECRET_ID (secret_id)")
        return payload

    def describe(self) -> str:
        return f"approle auth at auth/{self.mount}, role id {self.role_id!r}"

    def login_hint(self) -> str:
        hint = (f"that auth method 'approle' is enabled at auth/{self.mount}, the role id is "
                "right and the secret id is valid (not expired, uses left, CIDR bound)")
        if self.wrapped_secret_id_path or self.wrapped_secret_id:
            hint += ("; a wrapping token works once and within its TTL: if it was unwrapped "
                     "already and not by this process, someone else may have the secret id "
                     "(revoke it), else it expired before this login")
        return hint

    def login(self, vault: LoginContext) -> LoginResult:
        """Unwrap a response-wrapped secret id first, when one is configured."""
        path = f"auth/{self.mount}/login"
        if not (self.wrapped_secret_id_path or self.wrapped_secret_id):
            return vault.login(path, self.login_payload)
        wrapping, source = self._wrapping_token()
        digest = hashlib.sha256(wrapping.reveal().encode()).hexdigest()
        if digest in self._unwrapped:
            raise WrappingTokenUsedError(
                f"The response-wrapped AppRole secret id from {source} was already unwrapped "
                "by an earlier login of this process; a wrapping token works once.",
                hint="have the delivery system write a fresh wrapping token "
                f"({self._wrapped_setting()}) before each login (vault write -wrap-ttl=... "
                "-f auth/approle/role/<role>/secret-id), or deliver a multi-use secret id "
                "unwrapped (secret_id_path)")
        failure = None
        try:
            secret_id = vault.unwrap(wrapping, "secret_id")
        except VaultUnavailableError as exc:
            failure = exc
        if failure is not None:
            if failure.request_sent:  # it may have been used up on the way
                self._unwrapped.add(digest)
            raise failure
        self._unwrapped.add(digest)
        role_id = _clean(self.role_id, "AppRole role id", "VAULTDB_ROLE_ID (role_id)")
        return vault.login(path, {"role_id": role_id, "secret_id": secret_id})

    def _wrapped_setting(self) -> str:
        if self.wrapped_secret_id_path:
            return f"to {self.wrapped_secret_id_path!r}"
        return "in VAULTDB_SECRET_ID_WRAPPED"

    def _wrapping_token(self) -> tuple[Secret, str]:
        if self.wrapped_secret_id_path:
            raw = _read_secret_file(self.wrapped_secret_id_path, "wrapped AppRole secret id",
                                    "wrapped_secret_id_path / VAULTDB_SECRET_ID_WRAPPED_PATH")
            source = repr(self.wrapped_secret_id_path)
        else:
            raw, source = str(self.wrapped_secret_id).strip(), "VAULTDB_SECRET_ID_WRAPPED"
        if raw.startswith("{"):  # the JSON of `vault write -wrap-ttl=... -format=json`
            try:
                info = json.loads(raw)
                raw = str((info.get("wrap_info") or info)["token"])
            except (ValueError, KeyError, TypeError, AttributeError):
                raise ConfigurationError(
                    f"The wrapped secret id from {source} is JSON without wrap_info.token.",
                    hint="write the wrapping token itself, or the CLI's -format=json "
                    "answer") from None
        # It travels in the X-Vault-Token header: same checks as a token.
        return Secret(_clean(raw, "wrapped AppRole secret id", f"{source} "
                             "(wrapped_secret_id)", header=True)), source


@dataclass(frozen=True)
class TokenAuth:
    """A token handed in: ``VAULT_TOKEN``/``BAO_TOKEN``, or a file such as an agent's sink.

    The token is not this process's to revoke: vaultdb revokes the leases it created but never
    a token it was given.
    """

    token: str | None = field(default=None, repr=False)
    token_path: str | None = None
    mount: str = "token"
    method: str = field(default="token", init=False)

    def read_token(self) -> str:
        """The token to send: stripped like a token file, refused if no header can carry it."""
        if self.token_path:
            return _read_secret_file(self.token_path, "Vault token",
                                     "VAULTDB_VAULT_TOKEN_PATH (token_path)", header=True)
        from .settings import environ, raw

        token = self.token or raw(environ(), "VAULT_TOKEN")
        if not token:
            raise ConfigurationError(
                "No Vault token is configured.",
                hint="VAULT_TOKEN (or BAO_TOKEN), or TokenAuth(token_path=...)")
        return _clean(token, "Vault token", "VAULT_TOKEN / BAO_TOKEN (TokenAuth token=)",
                      header=True)

    def login_payload(self) -> dict[str, str]:
        return {}

    def describe(self) -> str:
        source = repr(self.token_path) if self.token_path else "VAULT_TOKEN"
        return f"token auth ({source})"

    def login_hint(self) -> str:
        return "that the Vault token is valid: not expired, not revoked, and for this namespace"

    def login(self, vault: LoginContext) -> LoginResult:
        """No login request: the token handed in is looked up (TTL, renewability)."""
        return vault.lookup_token(Secret(self.read_token()))


@dataclass(frozen=True)
class CertAuth(AuthBase):
    """TLS certificate auth (``cert``): the client certificate is presented for the login only.

    The certificate and key files are re-read at every login, so a pair rotated by
    cert-manager (or any other renewer) is picked up without a restart. ``name`` picks the
    cert role; without it Vault tries every role that trusts the certificate.
    """

    cert_path: str
    #: ``None``: the key is in ``cert_path`` too.
    key_path: str | None = None
    name: str | None = None
    mount: str = "cert"
    method: str = field(default="cert", init=False)

    def login_payload(self) -> dict[str, Any]:
        return {"name": self.name} if self.name else {}

    def login(self, vault: LoginContext) -> LoginResult:
        if not vault.addr.startswith("https://"):
            raise ConfigurationError(
                f"cert auth needs TLS to Vault, but VAULT_ADDR is {vault.addr!r}.",
                hint="an https:// VAULT_ADDR reaching Vault's TLS listener directly (a proxy "
                "that terminates TLS drops the client certificate)")
        self._check_files()
        return vault.login(self.login_path(), self.login_payload(),
                           client_cert=(self.cert_path, self.key_path))

    def _check_files(self) -> None:
        """Missing, unreadable, mismatched or out-of-date files: a clear error, before Vault."""
        from ._pem import certificate_validity

        setting = "cert_path / VAULTDB_CLIENT_CERT_PATH"
        pem = _read_secret_file(self.cert_path, "client certificate", setting).encode()
        if self.key_path:
            # Read only to check it exists and is readable; never kept or shown.
            _read_secret_file(self.key_path, "client key", "key_path / VAULTDB_CLIENT_KEY_PATH")
        problem = None
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(self.cert_path, self.key_path)
        except ssl.SSLError as exc:
            problem = exc.reason or type(exc).__name__
        except OSError as exc:
            problem = exc.strerror or type(exc).__name__
        if problem is not None:
            raise ConfigurationError(
                f"The client certificate {self.cert_path!r} and key "
                f"{self.key_path or '(in the same file)'!r} cannot be used together "
                f"({problem}).",
                hint="that the key file is the certificate's own unencrypted private key (a "
                "rotation may have replaced one file but not yet the other)")
        validity = certificate_validity(pem)
        if validity is None:
            return
        now = datetime.now(timezone.utc)
        not_before, not_after = validity
        if now >= not_after:
            raise ConfigurationError(
                f"The client certificate {self.cert_path!r} expired at "
                f"{not_after:%Y-%m-%d %H:%M:%S} UTC.",
                hint="whatever renews it (cert-manager's Certificate status, the secret "
                "mounted at that path)")
        if now < not_before:
            raise ConfigurationError(
                f"The client certificate {self.cert_path!r} is not valid before "
                f"{not_before:%Y-%m-%d %H:%M:%S} UTC.",
                hint="this machine's clock, or the issuer's")

    def describe(self) -> str:
        role = f", role {self.name!r}" if self.name else ""
        return f"cert auth at auth/{self.mount}{role} ({self.cert_path!r})"

    def login_hint(self) -> str:
        role = f"certs/{self.name}" if self.name else "a cert role"
        return (f"that auth method 'cert' is enabled at auth/{self.mount} and auth/{self.mount}/"
                f"{role} trusts the certificate in {self.cert_path!r} (its CA or itself, and "
                "its allowed names), and that nothing between this process and Vault "
                "terminates TLS")


@dataclass(frozen=True)
class ProxyAuth(AuthBase):
    """No token: a local Vault Proxy or Agent (``use_auto_auth_token``) adds its own.

    Point ``VAULT_ADDR`` at the proxy's listener (``http://127.0.0.1:8100`` or
    ``unix:///run/vault/proxy.sock``). The token is the proxy's: vaultdb never renews or
    revokes it, and credentials' deadlines come from their leases alone. vaultdb still renews,
    rotates and revokes its own leases, through the proxy.
    """

    #: Ask ``auth/token/lookup-self`` through the proxy at login, so a proxy that adds no
    #: token fails at once with an error that says so.
    check: bool = True
    mount: str = "token"
    method: str = field(default="proxy", init=False)

    def login(self, vault: LoginContext) -> LoginResult:
        return vault.no_token(check=self.check)

    def describe(self) -> str:
        return "no token: the Vault Proxy/Agent at VAULT_ADDR adds its own"

    def login_hint(self) -> str:
        return ("that VAULT_ADDR is the local Vault Proxy or Agent listener (not Vault itself), "
                "that it sets use_auto_auth_token = true (api_proxy block), that its auto_auth "
                "has logged in (its log), and that its token has the 'default' policy")


def auth_from_env(env: Mapping[str, str] | None = None) -> AuthMethod:
    """Pick the login method from the environment; see :func:`vaultdb.settings.auth_from_env`."""
    from .settings import auth_from_env as _auth_from_env

    auth: AuthMethod = _auth_from_env(env)
    return auth
