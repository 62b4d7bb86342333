"""Helpers shared by the adapters (SQLAlchemy, psycopg, Redis): no framework import, no Vault
call.

* :class:`MissingExtraError`: what an adapter raises at import when its optional dependency is
  missing, naming the extra to install.
* :func:`is_auth_failure`: does a connect error mean "these credentials no longer work"
  (revoked or expired lease), as opposed to a network or configuration error?
* :class:`RefreshGuard`: at most one credentials refresh per failing generation, so a server
  that rejects every login (pg_hba.conf, a wrong database) cannot make each connect attempt
  fetch a new Vault lease.
"""

from __future__ import annotations

import threading

from vaultdb.credentials import Credentials
from vaultdb.provider import CredentialProvider

__all__ = ["GENERATION_KEY", "MissingExtraError", "RefreshGuard", "is_auth_failure"]

#: Name under which adapters stamp a connection with the credential generation it was opened
#: with (a key of SQLAlchemy's ``ConnectionPoolEntry.info``, an attribute of psycopg
#: connections).
GENERATION_KEY = "_vaultdb_generation"

#: SQLSTATEs of a login refused for its credentials: invalid_password (wrong or expired
#: password; also what PostgreSQL answers for a dropped role under password authentication)
#: and invalid_authorization_specification (role does not exist, role may not log in).
AUTH_SQLSTATES = frozenset({"28P01", "28000"})
#: MySQL/MariaDB login refusals that new credentials can cure (PyMySQL, mysqlclient, aiomysql
#: and asyncmy put the code in ``args[0]``): ER_DBACCESS_DENIED_ERROR (1044),
#: ER_ACCESS_DENIED_ERROR (1045: wrong password, or the user was dropped),
#: ER_ACCESS_DENIED_NO_PASSWORD_ERROR (1698), ER_MUST_CHANGE_PASSWORD_LOGIN (1862: expired
#: password), MySQL's ER_ACCOUNT_HAS_BEEN_LOCKED (3118) and MariaDB's (4151).
#: 1044, 1045 and 4151 are checked against a real MariaDB in tests/integrations/mysql.
AUTH_MYSQL_CODES = frozenset({1044, 1045, 1698, 1862, 3118, 4151})
#: libpq reports connection failures as text only (psycopg 3 and psycopg2 set no SQLSTATE on
#: them), so these server messages are matched too. PostgreSQL sends them in English unless
#: the server's ``lc_messages`` says otherwise. Redis has no codes beyond the message's first
#: word, which redis-py turns into the exception class and removes from the text.
AUTH_MESSAGES = ("password authentication failed", "is not permitted to log in",
                 # Redis/Valkey ``WRONGPASS`` (redis-py strips the code): a deleted ACL user or
                 # a wrong password; and redis-py's own words for an AUTH not answered OK.
                 "invalid username-password pair", "Invalid Username or Password")


class MissingExtraError(ImportError):
    """An optional dependency of a vaultdb integration is not installed."""

    def __init__(self, module: str, extra: str) -> None:
        super().__init__(f"vaultdb.integrations.{extra} needs {module!r}: "
                         f"pip install 'vaultdb-creds[{extra}]'", name=module)
        self.extra = extra


def is_auth_failure(exc: BaseException) -> bool:
    """True when ``exc`` (or what it wraps) is the server refusing the credentials."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        err = todo.pop()
        if err is None or id(err) in seen:
            continue
        seen.add(id(err))
        code = getattr(err, "sqlstate", None) or getattr(err, "pgcode", None)
        if code in AUTH_SQLSTATES:
            return True
        args = getattr(err, "args", ())
        if args and isinstance(args[0], int) and args[0] in AUTH_MYSQL_CODES:
            return True
        text = str(err)
        if any(message in text for message in AUTH_MESSAGES):
            return True
        if "role \"" in text and "does not exist" in text:
            return True
        orig = getattr(err, "orig", None)  # sqlalchemy.exc.DBAPIError wraps the driver error
        todo.extend([orig if isinstance(orig, BaseException) else None,
                     err.__cause__, err.__context__])
    return False


class RefreshGuard:
    """Decide whether a login refused for ``creds`` may trigger a credentials refresh.

    The first refusal of a generation refreshes (the lease was revoked or expired under us, or
    the server restarted without the user). If credentials obtained by that refresh are refused
    as well, the credentials are not the problem: later refusals of that generation are raised
    without another Vault call, until the provider moves on to a new generation by itself.
    """

    def __init__(self, provider: CredentialProvider) -> None:
        self._provider = provider
        self._lock = threading.Lock()
        self._suspect: int | None = None

    def refresh(self, failed: Credentials) -> Credentials | None:
        """Fresh credentials to retry with, or ``None`` when retrying cannot help."""
        with self._lock:
            if failed.generation == self._suspect:
                return None
        fresh = self._provider.refresh(failed)
        if fresh.generation == failed.generation and fresh.password == failed.password:
            return None
        return fresh

    def retry_failed(self, creds: Credentials) -> None:
        """Record that credentials obtained by a refresh were refused too."""
        with self._lock:
            self._suspect = creds.generation
