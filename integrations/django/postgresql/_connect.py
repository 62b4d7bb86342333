"""``SET ROLE`` on a raw psycopg connection (plain path and the pool's ``configure``).

Logging in (with the one refresh guard) is shared by every ENGINE: see ``.._backend``. Works
with psycopg 3 and psycopg2 alike (both expose ``sql.SQL``/``sql.Identifier``).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["set_role"]


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
