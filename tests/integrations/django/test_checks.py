"""System checks: clear messages, no Vault call unless --deploy asks for a live check."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import override_settings
from vaultdb.integrations.django.checks import check_vault_live, check_vault_settings

from vaultdb.testing import database_users_of_role

ENGINE = "vaultdb.integrations.django.postgresql"

pytestmark = pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")


def entry(vault: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"ENGINE": ENGINE, "NAME": "app", "VAULT": vault, **extra}


def ids(databases: dict[str, Any]) -> list[str]:
    with override_settings(DATABASES=databases):
        return [m.id for m in check_vault_settings()]


def test_valid_settings_pass(django_configured):
    vault = {"role": "r", "vault_addr": "http://127.0.0.1:1",
             "auth": {"method": "kubernetes", "role": "app", "token_path": "/nonexistent"}}
    assert ids({"default": entry(vault)}) == []


def test_mistakes_are_reported_with_the_alias(django_configured):
    base = {"role": "r", "vault_addr": "http://127.0.0.1:1",
            "auth": {"method": "kubernetes", "role": "app"}}
    with override_settings(DATABASES={"replica": entry({**base, "rol": "x"})}):
        [message] = check_vault_settings()
    assert message.id == "vaultdb.E001"
    assert "DATABASES['replica']" in message.msg and "'rol'" in message.msg
    assert "role" in (message.hint or "")
    assert ids({"default": entry({**base, "auth": {"method": "ldap"}})}) == ["vaultdb.E001"]
    assert ids({"default": entry({**base, "auth": {"method": "kubernetes"}})}) in (
        [], ["vaultdb.E001"])  # the auth role may come from VAULTDB_AUTH_ROLE
    assert ids({"default": entry({**base, "auth": {"method": "token", "token": "s.x"}})}) == [
        "vaultdb.W003"]
    assert ids({"default": entry(base, USER="u", PASSWORD="p")}) == ["vaultdb.W002"]
    assert ids({"default": entry({**base, "set_role": "a"},
                                 OPTIONS={"assume_role": "b"})}) == ["vaultdb.E003"]
    assert ids({"default": {"ENGINE": "django.db.backends.postgresql", "VAULT": base}}) == [
        "vaultdb.W001"]
    assert ids({"default": entry({**base, "drain_seconds": -1})}) == ["vaultdb.E002"]
    assert ids({"default": entry({**base, "prefetch": "yes"})}) == ["vaultdb.E002"]
    assert ids({"default": entry({**base, "prefetch": True})}) == []


def test_static_check_never_calls_vault_but_deploy_does(django_configured, vaultdb_role_name,
                                                        tmp_path):
    stack = django_configured
    stack.create_database_role(vaultdb_role_name)
    stack.create_kubernetes_role(vaultdb_role_name)
    token = stack.write_service_account_token(tmp_path / "token")
    vault = {"role": vaultdb_role_name, "vault_addr": stack.vault_addr,
             "auth": {"method": "kubernetes", "role": vaultdb_role_name,
                      "token_path": str(token)}}
    with override_settings(DATABASES={"default": entry(vault)}):
        assert check_vault_settings() == []
        assert check_vault_live() == []
    bad = {**vault, "auth": {**vault["auth"], "role": "nope"}}
    with override_settings(DATABASES={"default": entry(bad)}):
        [message] = check_vault_live()
    assert message.id == "vaultdb.E010" and "nope" in str(message.hint)
    assert database_users_of_role(stack, vaultdb_role_name) == set()  # the live check revoked
    with override_settings(DATABASES={"default": entry(bad)}, VAULTDB_LIVE_CHECK=False):
        assert check_vault_live() == []


def test_mysql_engine_is_checked_too(django_configured):
    vault = {"role": "r", "mount": "mysql", "vault_addr": "http://127.0.0.1:1",
             "auth": {"method": "kubernetes", "role": "app", "token_path": "/nonexistent"}}
    mysql = "vaultdb.integrations.django.mysql"
    assert ids({"default": entry(vault, ENGINE=mysql)}) == []
    assert ids({"default": entry({**vault, "rol": "x"}, ENGINE=mysql)}) == ["vaultdb.E001"]
    # No object owner in MySQL: set_role is refused; a login in OPTIONS is ignored.
    assert ids({"default": entry({**vault, "set_role": "owner"}, ENGINE=mysql)}) == [
        "vaultdb.E005"]
    assert ids({"default": entry(vault, ENGINE=mysql, OPTIONS={"password": "x"})}) == [
        "vaultdb.W005"]
