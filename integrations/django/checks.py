"""``manage.py check``: validate each alias's ``VAULT`` settings, without calling Vault.

The settings are translated exactly as the backend does (registry + provider constructor,
which does no I/O), so a check passes only if the backend could start. ``check --deploy``
additionally logs in, fetches credentials and revokes them right away (a live check); the
Django setting ``VAULTDB_LIVE_CHECK = False`` skips it.
Messages name the alias and never contain a secret.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning

from vaultdb.errors import VaultDBError

from .registry import build_provider, typed_values, vault_settings

__all__ = ["ENGINE", "ENGINES", "check_vault_live", "check_vault_settings", "vaultdb_aliases"]

ENGINE = "vaultdb.integrations.django.postgresql"
MYSQL_ENGINE = "vaultdb.integrations.django.mysql"
#: Every vaultdb ENGINE.
ENGINES = (ENGINE, MYSQL_ENGINE)


def _is_vaultdb(entry: Mapping[str, Any]) -> bool:
    return str(entry.get("ENGINE", "")).startswith(ENGINES)


def vaultdb_aliases() -> dict[str, Mapping[str, Any]]:
    """``DATABASES`` entries that use a vaultdb backend (or carry a ``VAULT`` dict)."""
    databases: Mapping[str, Mapping[str, Any]] = getattr(settings, "DATABASES", {}) or {}
    return {alias: entry for alias, entry in databases.items()
            if _is_vaultdb(entry) or "VAULT" in entry}


def _where(alias: str) -> str:
    return f"DATABASES[{alias!r}]"


def _check_alias(alias: str, entry: Mapping[str, Any]) -> Iterable[CheckMessage]:
    where = _where(alias)
    if not _is_vaultdb(entry):
        yield Warning(f"{where} has VAULT settings but ENGINE is {entry.get('ENGINE')!r}: "
                      "they are ignored.", hint=" or ".join(map(repr, ENGINES)),
                      id="vaultdb.W001")
        return
    try:
        vault = vault_settings(entry)
    except VaultDBError as exc:
        yield Error(f"{where}['VAULT']: {exc.message}", hint=exc.hint, id="vaultdb.E001")
        return
    try:
        typed_values(vault)
    except VaultDBError as exc:
        yield Error(f"{where}['VAULT'] has a value of the wrong type or range: {exc.message}",
                    hint=exc.hint, id="vaultdb.E002")
        return
    try:
        build_provider(vault)
    except VaultDBError as exc:
        yield Error(f"{where}['VAULT']: {exc.message}", hint=exc.hint, id="vaultdb.E001")
        return
    except (TypeError, ValueError) as exc:
        yield Error(f"{where}['VAULT'] has a value of the wrong type or range: {exc}",
                    hint="see docs/django.md for each key's type", id="vaultdb.E002")
        return
    if not isinstance(vault.get("prefetch", False), bool):
        yield Error(f"{where}['VAULT']['prefetch'] must be True or False.",
                    hint="see docs/django.md for each key's type", id="vaultdb.E002")
    if entry.get("USER") or entry.get("PASSWORD"):
        yield Warning(f"{where} sets USER/PASSWORD, which vaultdb ignores (credentials come "
                      "from Vault).", hint="remove USER and PASSWORD", id="vaultdb.W002")
    auth = vault.get("auth") or {}
    if isinstance(auth, Mapping) and (auth.get("secret_id") or auth.get("token")):
        yield Warning(f"{where}['VAULT']['auth'] holds a secret in settings.",
                      hint="use secret_id_path / token_path (a mounted file) instead",
                      id="vaultdb.W003")
    options = entry.get("OPTIONS") or {}
    if str(entry.get("ENGINE", "")).startswith(MYSQL_ENGINE):
        yield from _check_mysql(where, vault, options)
        return
    role, assume = vault.get("set_role"), options.get("assume_role")
    if role and assume and role != assume:
        yield Error(f"{where} sets both VAULT['set_role'] ({role!r}) and OPTIONS['assume_role'] "
                    f"({assume!r}).", hint="keep VAULT['set_role'] only", id="vaultdb.E003")
    if options.get("pool"):
        from .postgresql.base import POOL_SUPPORTED

        if not POOL_SUPPORTED:
            yield Error(f"{where} sets OPTIONS['pool'], which needs Django 5.1+ and psycopg 3.",
                        hint="remove OPTIONS['pool'] or upgrade", id="vaultdb.E004")
        elif assume and not role:
            yield Warning(f"{where}: OPTIONS['assume_role'] with the pool is applied by vaultdb.",
                          hint="prefer VAULT['set_role']", id="vaultdb.W004")


def _check_mysql(where: str, vault: Mapping[str, Any], options: Mapping[str, Any]
                 ) -> Iterable[CheckMessage]:
    if vault.get("set_role"):
        yield Error(f"{where}['VAULT']['set_role'] is PostgreSQL only.",
                    hint="MySQL has no object owner: grant the Vault role's users privileges on "
                         "the schema instead (docs/mysql.md)", id="vaultdb.E005")
    if any(key in options for key in ("user", "password", "passwd")):
        yield Warning(f"{where}['OPTIONS'] sets a user or password, which vaultdb ignores.",
                      hint="remove them from OPTIONS", id="vaultdb.W005")


def check_vault_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Static checks of every vaultdb alias; never calls Vault."""
    messages: list[CheckMessage] = []
    for alias, entry in vaultdb_aliases().items():
        messages.extend(_check_alias(alias, entry))
    return messages


def check_vault_live(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """``check --deploy``: log in, fetch credentials, revoke them.

    Skipped when the Django setting ``VAULTDB_LIVE_CHECK = False``.
    """
    if not getattr(settings, "VAULTDB_LIVE_CHECK", True):
        return []
    messages: list[CheckMessage] = []
    for alias, entry in vaultdb_aliases().items():
        if not _is_vaultdb(entry):
            continue
        try:
            provider = build_provider({**vault_settings(entry), "handle_sigterm": False})
        except (VaultDBError, TypeError, ValueError):
            continue  # reported by check_vault_settings
        try:
            provider.credentials()
        except VaultDBError as exc:
            messages.append(Error(f"{_where(alias)}: live Vault check failed: {exc.message}",
                                  hint=exc.hint, id="vaultdb.E010"))
        finally:
            provider.close()
    return messages
