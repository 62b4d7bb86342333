"""Response-wrapped AppRole secret ids, against the real OpenBao.

The wrapping token (from a file the delivery system rewrites, or a variable) is unwrapped at
login. A wrapping token works once: at re-login the file is read again, and the same, already
unwrapped token fails at once with :class:`~vaultdb.WrappingTokenUsedError`, before any
request; a fresh one logs in.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest

from vaultdb import (
    AppRoleAuth,
    AuthenticationError,
    RequestInfo,
    WrappingTokenUsedError,
    add_request_observer,
)
from vaultdb._vault import VaultClient, VaultSettings
from vaultdb.auth import auth_from_env
from vaultdb.testing import VaultDBStack, database_users_of_role


@pytest.fixture(scope="module")
def approle(vaultdb_stack: VaultDBStack) -> str:
    vaultdb_stack.create_approle("wrapped", token_ttl=60)
    return "wrapped"


@pytest.fixture
def role_id(vaultdb_stack: VaultDBStack, approle: str) -> str:
    return str(vaultdb_stack.root_client().read(
        f"auth/approle/role/{approle}/role-id")["data"]["role_id"])


@pytest.fixture
def requests() -> Iterator[list[RequestInfo]]:
    seen: list[RequestInfo] = []
    remove = add_request_observer(seen.append)
    yield seen
    remove()


def client(stack: VaultDBStack) -> VaultClient:
    return VaultClient(VaultSettings(addr=stack.vault_addr, timeout=5))


def reachable(error: BaseException) -> str:
    """What an error tracker could capture: messages, chains, the locals of every frame but
    this test's own (which holds the token on purpose)."""
    found: list[str] = []
    pending: list[BaseException | None] = [error]
    while pending:
        exc = pending.pop()
        if exc is None:
            continue
        found.append(f"{exc!s} {exc!r}")
        for frame, _ in traceback.walk_tb(exc.__traceback__):
            if frame.f_code.co_filename != __file__:
                found.extend(f"{name}={value!r}" for name, value in frame.f_locals.items())
        pending += [exc.__cause__, exc.__context__]
    return "\n".join(found)


def test_a_wrapped_secret_id_file_logs_in_and_a_reused_one_is_refused(
        vaultdb_stack: VaultDBStack, approle: str, role_id: str, tmp_path: Path,
        requests: list[RequestInfo]) -> None:
    wrapped = tmp_path / "secret-id.wrapped"
    first = vaultdb_stack.wrapped_secret_id(approle)
    wrapped.write_text(first + "\n")
    auth = AppRoleAuth(role_id=role_id, wrapped_secret_id_path=str(wrapped))
    vault = client(vaultdb_stack)
    login = vault.login(auth)
    assert login.owned and "vaultdb-app" in vault.lookup_self().policies
    assert [r.path for r in requests][:2] == ["sys/wrapping/unwrap", "auth/approle/login"]

    requests.clear()
    with pytest.raises(WrappingTokenUsedError) as info:
        vault.login(auth)  # the delivery system has not written a new one yet
    assert requests == []  # refused before anything was sent
    text = str(info.value)
    assert repr(str(wrapped)) in text and "fresh wrapping token" in text
    assert first not in reachable(info.value)
    assert isinstance(info.value, AuthenticationError)

    wrapped.write_text(vaultdb_stack.wrapped_secret_id(approle))  # the fresh one arrives
    assert vault.login(auth).accessor != login.accessor


def test_a_token_unwrapped_by_someone_else_is_an_authentication_error(
        vaultdb_stack: VaultDBStack, approle: str, role_id: str) -> None:
    token = vaultdb_stack.wrapped_secret_id(approle)
    vaultdb_stack.root_client().sys.unwrap(token)  # intercepted on the way, say
    with pytest.raises(AuthenticationError) as info:
        client(vaultdb_stack).login(AppRoleAuth(role_id=role_id, wrapped_secret_id=token))
    assert "unwrapped already" in str(info.value)
    assert info.value.path == "sys/wrapping/unwrap"
    assert token not in reachable(info.value)


def test_the_cli_json_answer_is_accepted(vaultdb_stack: VaultDBStack, approle: str,
                                         role_id: str, tmp_path: Path) -> None:
    token = vaultdb_stack.wrapped_secret_id(approle)
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"wrap_info": {"token": token, "ttl": 60}}))
    client(vaultdb_stack).login(AppRoleAuth(role_id=role_id,
                                            wrapped_secret_id_path=str(wrapped)))


def test_a_provider_from_the_environment_gets_credentials(
        vaultdb_stack: VaultDBStack, approle: str, role_id: str, tmp_path: Path,
        vaultdb_role_name: str, vaultdb_provider_factory) -> None:  # type: ignore[no-untyped-def]
    wrapped = tmp_path / "wrapped"
    wrapped.write_text(vaultdb_stack.wrapped_secret_id(approle))
    auth = auth_from_env({"VAULTDB_ROLE_ID": role_id,
                          "VAULTDB_SECRET_ID_WRAPPED_PATH": str(wrapped)})
    assert isinstance(auth, AppRoleAuth) and auth.wrapped_secret_id_path == str(wrapped)
    provider = vaultdb_provider_factory(auth=auth, default_ttl=30, max_ttl=60)
    assert provider.credentials().username.startswith("v-approle-")
    provider.close()
    assert database_users_of_role(vaultdb_stack, vaultdb_role_name) == set()


def test_vaultdb_exec_never_hands_the_wrapping_token_to_its_command() -> None:
    from datetime import datetime, timezone

    from vaultdb.cli._exec import ExecOptions, child_environment
    from vaultdb.credentials import Credentials
    from vaultdb.settings import LOGIN_SECRET_VARIABLES

    assert "VAULTDB_SECRET_ID_WRAPPED" in LOGIN_SECRET_VARIABLES
    creds = Credentials("v-user", "pw", None, 0, datetime.now(timezone.utc), 1)
    env = child_environment({"VAULTDB_SECRET_ID_WRAPPED": "s.wrapping",
                             "VAULTDB_SECRET_ID_WRAPPED_PATH": "/run/wrapped"}, creds,
                            ExecOptions())
    assert env == {"VAULTDB_SECRET_ID_WRAPPED_PATH": "/run/wrapped", "PGUSER": "v-user",
                   "PGPASSWORD": "pw"}


def test_reprs_hide_the_wrapping_token() -> None:
    assert "s3cr3t" not in repr(AppRoleAuth(role_id="r", wrapped_secret_id="s3cr3t"))
