"""Log in with the provider's credentials; on an authentication failure refresh once and retry.

Shared by the plain connection path and the pool's connection class. Works with psycopg 3 and
psycopg2 alike (both expose ``sql.SQL``/``sql.Identifier`` and ``OperationalError``).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from vaultdb import CredentialProvider, Credentials

__all__ = ["connect_with_credentials", "is_auth_failure", "set_role"]

logger = logging.getLogger("vaultdb.integrations.django")

C = TypeVar("C")

# invalid_password, invalid_authorization_specification
_AUTH_SQLSTATES = frozenset({"28P01", "28000"})


def is_auth_failure(exc: BaseException) -> bool:
    """Whether a connection error means "these credentials do not (or no longer) work"."""
    code = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
    if code in _AUTH_SQLSTATES:
        return True
    text = str(exc)
    return "password authentication failed" in text or (
        "role " in text and "does not exist" in text)


def connect_with_credentials(
    provider: CredentialProvider,
    connect: Callable[[dict[str, Any]], C],
    params: dict[str, Any],
    operational_error: type[BaseException],
) -> tuple[C, Credentials]:
    """``connect(params + user/password)``; after a login refusal, refresh and try once more."""
    creds = provider.credentials()
    try:
        return connect({**params, "user": creds.username, "password": creds.password}), creds
    except operational_error as exc:
        if not is_auth_failure(exc):
            raise
        logger.warning("vaultdb: database login as %r was refused; getting new credentials",
                       creds.username)
    creds = provider.refresh(creds)
    return connect({**params, "user": creds.username, "password": creds.password}), creds


def set_role(connection: Any, role: str) -> None:
    """``SET ROLE`` on a raw DB-API connection, composed without Django's wrapper.

    (Django's own ``assume_role`` composes through the wrapper, which deadlocks inside a pool's
    ``configure`` callback.) Commits when the connection is not in autocommit mode.
    """
    driver = next((k.__module__.split(".")[0] for k in type(connection).__mro__
                   if k.__module__.split(".")[0] in ("psycopg", "psycopg2")), "psycopg")
    sql = importlib.import_module(driver + ".sql")
    with connection.cursor() as cursor:
        cursor.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
    if not connection.autocommit:
        connection.commit()
