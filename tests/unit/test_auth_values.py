"""Login values as users really deliver them: trailing newlines, stray characters, odd JWTs.

Pure logic (no Vault): what each method reads and sends, and that every refusal is a typed
error naming the setting, never echoing the secret.
"""

from __future__ import annotations

import base64
import json
import pathlib
import time
from typing import Any

import pytest

from vaultdb.auth import AppRoleAuth, JWTAuth, KubernetesAuth, TokenAuth, auth_from_env, jwt_expiry
from vaultdb.errors import ConfigurationError

SECRET = "hvs.CAESIT0PSECRET"


def _jwt(claims: Any) -> str:
    def part(value: bytes) -> str:
        return base64.urlsafe_b64encode(value).rstrip(b"=").decode()

    return ".".join([part(b'{"alg":"RS256"}'), part(json.dumps(claims).encode()), "c2ln"])


def _assert_secret_free(exc: BaseException, *secrets: str) -> None:
    """Nothing an error tracker shows may hold the secret: message, hint, chain, args."""
    seen: list[str] = []
    current: BaseException | None = exc
    while current is not None:
        seen += [str(current), repr(current), repr(current.args), str(getattr(current, "hint", ""))]
        current = current.__cause__ or current.__context__
    for secret in filter(None, secrets):
        assert all(secret not in text for text in seen), seen


@pytest.mark.parametrize("value", [SECRET + "\n", SECRET + "\r\n", " " + SECRET + "\t\n"])
def test_token_by_value_is_stripped_like_token_files(value: str) -> None:
    assert TokenAuth(token=value).read_token() == SECRET


def test_vault_token_variable_is_stripped() -> None:
    auth = auth_from_env({"VAULT_TOKEN": SECRET + "\n"})
    assert isinstance(auth, TokenAuth) and auth.read_token() == SECRET


def test_token_file_and_value_agree(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "token"
    path.write_text(SECRET + "\n")
    assert TokenAuth(token_path=str(path)).read_token() == TokenAuth(token=SECRET).read_token()


@pytest.mark.parametrize("bad", [SECRET + "\nsecond-line", SECRET + " x", SECRET + "\x00",
                                 SECRET + "é", "\n\n"])
def test_token_no_header_can_carry_is_a_typed_error_without_the_token(bad: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        TokenAuth(token=bad).read_token()
    assert "VAULT_TOKEN" in (info.value.hint or "")
    _assert_secret_free(info.value, SECRET, bad.strip())


def test_bad_token_file_is_a_typed_error_without_the_token(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "token"
    path.write_text(SECRET + "\n" + SECRET + "\n")
    with pytest.raises(ConfigurationError) as info:
        TokenAuth(token_path=str(path)).read_token()
    assert str(path) in str(info.value)
    _assert_secret_free(info.value, SECRET)


def test_secret_id_and_jwt_by_value_are_stripped() -> None:
    payload = AppRoleAuth(role_id="rid\n", secret_id="sid-123\n").login_payload()
    assert payload == {"role_id": "rid", "secret_id": "sid-123"}
    jwt = _jwt({"sub": "app", "exp": time.time() + 600})
    assert JWTAuth(role="r", jwt=jwt + "\n").login_payload()["jwt"] == jwt


@pytest.mark.parametrize("exp", ["soon", [1], {"at": 1}, True, float("nan"), float("inf"),
                                 pytest.param(10 ** 400, id="huge-int")])
def test_jwt_exp_that_is_not_a_number_is_a_typed_error(exp: object,
                                                       tmp_path: pathlib.Path) -> None:
    jwt = _jwt({"sub": "app", "exp": exp})
    with pytest.raises(ConfigurationError) as info:
        jwt_expiry(jwt)
    assert "exp" in str(info.value)
    _assert_secret_free(info.value, jwt)
    path = tmp_path / "sa-token"
    path.write_text(jwt + "\n")
    with pytest.raises(ConfigurationError) as info:
        KubernetesAuth(role="app", token_path=str(path)).login_payload()
    assert "VAULTDB_TOKEN_PATH" in (info.value.hint or "") and str(path) in str(info.value)
    _assert_secret_free(info.value, jwt)


@pytest.mark.parametrize("jwt", ["a.b.c", "a.!!!.c", "a." + base64.urlsafe_b64encode(
    b"[1, 2]").decode() + ".c"])
def test_jwt_whose_payload_is_not_json_claims_is_a_typed_error(jwt: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        JWTAuth(role="r", jwt=jwt).login_payload()
    assert "jwt" in (info.value.hint or "")
    _assert_secret_free(info.value, jwt)


def test_jwt_expiry_values() -> None:
    assert jwt_expiry(_jwt({"sub": "x"})) is None
    assert jwt_expiry(_jwt({"exp": 1700000000})) == 1700000000.0
    assert jwt_expiry(_jwt({"exp": 1700000000.5})) == 1700000000.5


def test_jwt_is_decoded_in_one_place() -> None:
    root = pathlib.Path(__file__).resolve().parents[2]
    decoders = [p.relative_to(root).as_posix()
                for base in ("vaultdb", "integrations") for p in (root / base).rglob("*.py")
                if "urlsafe_b64decode" in p.read_text(encoding="utf-8")]
    assert decoders == ["vaultdb/auth.py"]  # (the Raft index header is plain base64)
