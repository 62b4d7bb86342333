"""Every error vaultdb raises, and whether retrying can help.

::

    VaultDBError                      base class; never carries a token or password
    ├── ConfigurationError            settings are wrong or missing; fix the config (not retryable)
    │   ├── SecretPathError           wrong secrets mount or role: nothing answers at that path
    │   └── TLSConfigurationError     Vault's certificate cannot be verified
    ├── AuthenticationError           login refused: auth mount, role, JWT or secret id
    ├── PermissionDeniedError         logged in, but the policy lacks a capability (not retryable)
    ├── VaultUnavailableError         network error, timeout, 5xx, 429 or sealed Vault (retryable)
    ├── InvalidResponseError          Vault's answer makes no sense (a TTL of NaN, -1, 1e20)
    ├── LeaseError                    a lease could not be renewed or revoked
    │   ├── LeaseNotFoundError        Vault no longer knows the lease (restart, revoked, max_ttl)
    │   └── CredentialsExpiredError   nothing valid is left and no fresh credentials could be had
    └── ProviderClosedError           the provider was closed; build a new one

Each error has a ``retryable`` attribute, a ``hint`` naming what to check, and, when it came
from an HTTP call, ``method``, ``path``, ``status`` and Vault's own ``vault_errors`` (Vault
never echoes a token or password in those).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "AuthenticationError",
    "ConfigurationError",
    "CredentialsExpiredError",
    "InvalidResponseError",
    "LeaseError",
    "LeaseNotFoundError",
    "PermissionDeniedError",
    "ProviderClosedError",
    "SecretPathError",
    "TLSConfigurationError",
    "VaultDBError",
    "VaultUnavailableError",
]


class VaultDBError(Exception):
    """Base class of every vaultdb error."""

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        method: str | None = None,
        path: str | None = None,
        status: int | None = None,
        vault_errors: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.method = method
        self.path = path
        self.status = status
        self.vault_errors = tuple(vault_errors)

    def __str__(self) -> str:
        parts = [self.message]
        if self.method and self.path:
            where = f"{self.method} {self.path}"
            parts.append(f"({where}, HTTP {self.status})" if self.status else f"({where})")
        if self.vault_errors:
            parts.append("Vault said: " + "; ".join(self.vault_errors))
        if self.hint:
            parts.append("Check: " + self.hint)
        return " ".join(parts)


class ConfigurationError(VaultDBError):
    """The settings are wrong or incomplete; retrying will not help."""


class SecretPathError(ConfigurationError):
    """Nothing answers at the secret path: wrong mount or role name."""


class TLSConfigurationError(ConfigurationError):
    """Vault's TLS certificate could not be verified."""


class AuthenticationError(VaultDBError):
    """Vault refused the login."""


class PermissionDeniedError(VaultDBError):
    """Vault accepted the token but its policy does not allow the request."""


class VaultUnavailableError(VaultDBError):
    """Vault could not be reached or answered with a transient error."""

    retryable = True

    def __init__(self, message: str, *, request_sent: bool = False, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        #: True when the request may have reached Vault (a read timeout, a 5xx): a
        #: ``database/creds`` read may then have created a lease nobody holds.
        self.request_sent = request_sent


class InvalidResponseError(VaultDBError):
    """Vault answered, but with values no lease can have (not retried in place)."""


class LeaseError(VaultDBError):
    """A lease operation failed."""


class LeaseNotFoundError(LeaseError):
    """Vault does not know the lease any more; fetch fresh credentials."""


class CredentialsExpiredError(LeaseError):
    """The current credentials ran out and no fresh ones could be fetched."""

    retryable = True


class ProviderClosedError(VaultDBError):
    """The provider was closed; closed providers are not reused."""
