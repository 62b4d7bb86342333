"""pandas ``read_sql`` with a plugin URL: a notebook or a report script, no vaultdb code.

::

    export VAULT_ADDR=... VAULT_TOKEN=...
    python examples/recipes/pandas_read_sql.py \
        'postgresql+psycopg://db.internal:5432/app?plugin=vaultdb&vaultdb_role=app-ro'
"""

from __future__ import annotations

import sys

import pandas as pd


def report(url: str) -> pd.DataFrame:
    # pandas builds (and disposes) an engine from the URL; vaultdb's shared provider behind
    # it keeps one lease for every call in this process.
    return pd.read_sql("SELECT session_user AS db_user, now() AS at", url)


if __name__ == "__main__":
    print(report(sys.argv[1]))
