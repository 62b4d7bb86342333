"""vaultdb: dynamic database credentials from HashiCorp Vault / OpenBao, in process.

Log in (Kubernetes, JWT, AppRole or token), get database credentials, renew and rotate them in
a background thread, and revoke them when the process ends::

    from vaultdb import CredentialProvider, KubernetesAuth

    provider = CredentialProvider("app-rw", auth=KubernetesAuth(role="app"))
    creds = provider.credentials()      # immutable snapshot; no Vault call while valid
    provider.close()                    # revoke; also done at exit

Importing vaultdb starts no thread and makes no network call.
"""

from __future__ import annotations

from ._process import close_all, install_sigterm_handler
from ._session import LoginSession
from ._vault import RequestInfo, add_request_observer
from .auth import AppRoleAuth, AuthMethod, JWTAuth, KubernetesAuth, TokenAuth
from .credentials import Credentials
from .errors import (
    AuthenticationError,
    ConfigurationError,
    CredentialsExpiredError,
    InvalidResponseError,
    LeaseError,
    LeaseNotFoundError,
    PermissionDeniedError,
    ProviderClosedError,
    SecretPathError,
    TLSConfigurationError,
    VaultDBError,
    VaultUnavailableError,
)
from .events import (
    LeaseCreated,
    LeaseEvent,
    LeaseExpired,
    LeaseRenewed,
    LeaseRevoked,
    LeaseRotated,
    LoginCreated,
    LoginExpired,
    LoginRenewed,
)
from .provider import CredentialProvider, ProviderState, ProviderStatus

__version__ = "0.1.0"

__all__ = [
    "AppRoleAuth",
    "AuthMethod",
    "AuthenticationError",
    "ConfigurationError",
    "CredentialProvider",
    "Credentials",
    "CredentialsExpiredError",
    "InvalidResponseError",
    "JWTAuth",
    "KubernetesAuth",
    "LeaseCreated",
    "LeaseError",
    "LeaseEvent",
    "LeaseExpired",
    "LeaseNotFoundError",
    "LeaseRenewed",
    "LeaseRevoked",
    "LeaseRotated",
    "LoginCreated",
    "LoginExpired",
    "LoginRenewed",
    "LoginSession",
    "PermissionDeniedError",
    "ProviderClosedError",
    "ProviderState",
    "ProviderStatus",
    "RequestInfo",
    "SecretPathError",
    "TLSConfigurationError",
    "TokenAuth",
    "VaultDBError",
    "VaultUnavailableError",
    "__version__",
    "add_request_observer",
    "close_all",
    "install_sigterm_handler",
]
