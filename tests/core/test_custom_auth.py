"""Users' own login methods, against the real OpenBao.

The documented example (``examples/auth/userpass_auth.py``, a ``userpass`` login on
:class:`vaultdb.AuthBase`) gets credentials end to end; a method written before the login hook
existed (only ``login_payload``/``describe``/``login_hint``) still works unchanged.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pytest

from vaultdb import AuthenticationError, AuthMethod, ConfigurationError, CredentialProvider
from vaultdb._vault import VaultClient, VaultSettings
from vaultdb.testing import VaultDBStack, database_users_of_role

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "auth" / "userpass_auth.py"
PASSWORD = "correct-horse-battery-staple"


def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("userpass_auth", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["userpass_auth"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def userpass(vaultdb_stack: VaultDBStack) -> str:
    root = vaultdb_stack.root_client()
    if "userpass/" not in root.sys.list_auth_methods()["data"]:
        root.sys.enable_auth_method("userpass")
    root.write("auth/userpass/users/app", password=PASSWORD, token_policies="vaultdb-app",
               token_ttl="60s")
    return "app"


def test_the_documented_userpass_method_gets_credentials(
        vaultdb_stack: VaultDBStack, userpass: str, tmp_path: Path, vaultdb_role_name: str,
        vaultdb_provider_factory: Callable[..., CredentialProvider]) -> None:
    (tmp_path / "password").write_text(PASSWORD + "\n")
    auth = example().UserpassAuth(username=userpass, password_path=str(tmp_path / "password"))
    assert isinstance(auth, AuthMethod)
    provider = vaultdb_provider_factory(auth=auth, default_ttl=30, max_ttl=60)
    assert provider.credentials().username.startswith("v-userpass-")
    assert provider.status().logins == 1
    provider.close()
    assert database_users_of_role(vaultdb_stack, vaultdb_role_name) == set()


def test_the_userpass_method_errors_name_what_to_check(
        vaultdb_stack: VaultDBStack, userpass: str, tmp_path: Path) -> None:
    vault = VaultClient(VaultSettings(addr=vaultdb_stack.vault_addr, timeout=5))
    module = example()
    (tmp_path / "password").write_text("wrong")
    with pytest.raises(AuthenticationError) as info:
        vault.login(module.UserpassAuth(username=userpass,
                                        password_path=str(tmp_path / "password")))
    assert "user 'app' exists" in str(info.value)
    with pytest.raises(ConfigurationError, match="cannot be read") as missing:
        vault.login(module.UserpassAuth(username=userpass, password_path=str(tmp_path / "no")))
    assert missing.value.__cause__ is None and missing.value.__context__ is None


@dataclass(frozen=True)
class PlainAppRole:
    """A method as users wrote them before the login hook: no base class, no ``login``."""

    role_id: str
    secret_id: str = field(repr=False)
    mount: str = "approle"
    method: str = "approle"

    def login_payload(self) -> dict[str, str]:
        return {"role_id": self.role_id, "secret_id": self.secret_id}

    def describe(self) -> str:
        return "my approle"

    def login_hint(self) -> str:
        return "my hint"


def test_a_method_without_the_login_hook_still_works(vaultdb_stack: VaultDBStack) -> None:
    role_id, secret_id = vaultdb_stack.create_approle("plain")
    vault = VaultClient(VaultSettings(addr=vaultdb_stack.vault_addr, timeout=5))
    assert not hasattr(PlainAppRole, "login")
    assert vault.login(PlainAppRole(role_id, secret_id)).owned
    with pytest.raises(AuthenticationError, match="my hint"):
        vault.login(PlainAppRole(role_id, "not-the-secret-id"))
