"""``INSTALLED_APPS += ["vaultdb.integrations.django"]``: system checks and ``runserver`` exit.

``ready()`` starts the first fetch in the background for aliases with ``"prefetch": True``
(so the login overlaps the rest of start-up), registers the checks of :mod:`.checks` and, for
processes where SIGTERM is still
unhandled (``manage.py runserver`` serves from a thread, where a handler cannot be installed
later), installs vaultdb's revoke-then-exit SIGTERM handler. A server that handles SIGTERM
itself (gunicorn, uvicorn, Celery) replaces or chains it; see docs/servers.md.
"""

from __future__ import annotations

import contextlib
import os

from django.apps import AppConfig
from django.core import checks

from vaultdb import VaultDBError, install_sigterm_handler
from vaultdb.settings import env_bool

from .checks import check_vault_live, check_vault_settings, vaultdb_aliases
from .registry import get_provider


class VaultDBConfig(AppConfig):  # type: ignore[misc]
    name = "vaultdb.integrations.django"
    label = "vaultdb"
    verbose_name = "vaultdb"

    def ready(self) -> None:
        checks.register(check_vault_settings, "vaultdb")
        checks.register(check_vault_live, "vaultdb", deploy=True)
        aliases = vaultdb_aliases()
        for entry in aliases.values():
            if (entry.get("VAULT") or {}).get("prefetch"):
                # Bad settings are left to the system checks, which report them with hints.
                with contextlib.suppress(VaultDBError):
                    get_provider(entry).start(wait=False)
        wanted = [(entry.get("VAULT") or {}).get("handle_sigterm") for entry in aliases.values()]
        if aliases and env_bool(os.environ, "VAULTDB_HANDLE_SIGTERM", True) and all(
                w is None or w is True for w in wanted):
            install_sigterm_handler()
