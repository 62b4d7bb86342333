"""Login methods: one small class each, holding settings only.

Each method builds the body of ``POST auth/<mount>/login``; :mod:`vaultdb._vault` sends it.
Token and JWT files are re-read at every login, because Kubernetes rewrites projected
service-account tokens before they expire and Vault Agent rewrites its sink file.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .errors import ConfigurationError

__all__ = [
    "DEFAULT_SA_TOKEN_PATH",
    "AppRoleAuth",
    "AuthMethod",
    "JWTAuth",
    "KubernetesAuth",
    "TokenAuth",
    "auth_from_env",
    "jwt_claims",
    "jwt_expiry",
]

logger = logging.getLogger(__name__)

DEFAULT_SA_TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount/token"


@runtime_checkable
class AuthMethod(Protocol):
    """What the provider needs from a login method."""

    @property
    def method(self) -> str: ...

    @property
    def mount(self) -> str: ...

    def login_payload(self) -> dict[str, str]: ...

    def describe(self) -> str: ...

    def login_hint(self) -> str: ...


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
        return (f"that auth method 'approle' is enabled at auth/{self.mount}, the role id is "
                "right and the secret id is valid (not expired, uses left, CIDR bound)")


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


def auth_from_env(env: Mapping[str, str] | None = None) -> AuthMethod:
    """Pick the login method from the environment; see :func:`vaultdb.settings.auth_from_env`."""
    from .settings import auth_from_env as _auth_from_env

    auth: AuthMethod = _auth_from_env(env)
    return auth
