"""Lease and login events, one frozen dataclass per transition (Spring Vault's model).

Subscribe with :meth:`vaultdb.CredentialProvider.subscribe`. Listeners run on the thread that
caused the transition: usually the provider's ``vaultdb-<role>-renewer`` thread, or the
caller's thread for the very first fetch and for :meth:`~vaultdb.CredentialProvider.close`.
Keep listeners quick and never call back into Vault from them. A listener that raises is
logged and skipped; the others still run and the renewer carries on.

A listener interested in "there are new credentials" handles :class:`LeaseCreated`, of which
:class:`LeaseRotated` is a subclass.
"""

from __future__ import annotations

from dataclasses import dataclass

from .credentials import Credentials
from .errors import VaultDBError

__all__ = [
    "LeaseCreated",
    "LeaseError",
    "LeaseEvent",
    "LeaseExpired",
    "LeaseRenewed",
    "LeaseRevoked",
    "LeaseRotated",
    "LoginCreated",
    "LoginExpired",
    "LoginRenewed",
]


@dataclass(frozen=True)
class LeaseEvent:
    """Base class of every event."""

    role: str


@dataclass(frozen=True)
class LeaseCreated(LeaseEvent):
    """New credentials are current (first fetch, or after a rotation)."""

    credentials: Credentials


@dataclass(frozen=True)
class LeaseRotated(LeaseCreated):
    """Fresh credentials replaced ``previous``, which stays valid for the drain window."""

    previous: Credentials
    reason: str


@dataclass(frozen=True)
class LeaseRenewed(LeaseEvent):
    """The current lease was extended (or a static password re-read unchanged)."""

    credentials: Credentials


@dataclass(frozen=True)
class LeaseExpired(LeaseEvent):
    """Credentials ran out before they could be replaced: connections with them will fail."""

    credentials: Credentials


@dataclass(frozen=True)
class LeaseRevoked(LeaseEvent):
    """The lease behind ``credentials`` was revoked; its database user is gone."""

    credentials: Credentials


@dataclass(frozen=True)
class LeaseError(LeaseEvent):
    """A Vault operation failed. ``will_retry`` tells whether vaultdb keeps trying."""

    error: VaultDBError
    operation: str
    will_retry: bool


@dataclass(frozen=True)
class LoginCreated(LeaseEvent):
    """The provider logged in (first login or re-login)."""

    method: str
    accessor: str


@dataclass(frozen=True)
class LoginRenewed(LeaseEvent):
    """The login token was renewed; ``ttl`` is what Vault granted."""

    accessor: str
    ttl: float


@dataclass(frozen=True)
class LoginExpired(LeaseEvent):
    """The login token ran out or was revoked; leases created with it are gone too."""

    accessor: str
