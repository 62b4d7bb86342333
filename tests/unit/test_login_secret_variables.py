"""``LOGIN_SECRET_VARIABLES`` is the one list of variables that carry a login secret.

``vaultdb exec`` removes exactly these from its command's environment; this checks the list
against what the login methods really send, so a method that starts reading a new secret
variable cannot be forgotten here.
"""

from __future__ import annotations

from datetime import datetime, timezone

from vaultdb.auth import TokenAuth, auth_from_env
from vaultdb.cli._exec import ExecOptions, child_environment
from vaultdb.credentials import Credentials
from vaultdb.settings import ENVIRONMENT, LOGIN_SECRET_VARIABLES

#: What each method sends that grants a login (the role name and mount do not).
SECRET_FIELDS = ("jwt", "secret_id", "role_id")


def _sent_secrets(env: dict[str, str]) -> set[str]:
    auth = auth_from_env(env)
    if isinstance(auth, TokenAuth):
        return {auth.read_token()}
    payload = auth.login_payload()
    return {payload[k] for k in SECRET_FIELDS if k in payload}


def test_every_secret_a_login_sends_comes_from_a_listed_variable(tmp_path) -> None:
    jwt_file = tmp_path / "jwt"
    jwt_file.write_text("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhcHAifQ.c2ln\n")
    base = {"VAULTDB_AUTH_ROLE": "app", "VAULTDB_TOKEN_PATH": str(jwt_file)}
    setups = [
        {"VAULTDB_AUTH_METHOD": "token", "VAULT_TOKEN": "value-of-VAULT_TOKEN"},
        {"VAULTDB_AUTH_METHOD": "token", "BAO_TOKEN": "value-of-BAO_TOKEN"},
        {"VAULTDB_AUTH_METHOD": "approle", "VAULTDB_ROLE_ID": "value-of-VAULTDB_ROLE_ID",
         "VAULTDB_SECRET_ID": "value-of-VAULTDB_SECRET_ID"},
        {"VAULTDB_AUTH_METHOD": "kubernetes"},
        {"VAULTDB_AUTH_METHOD": "jwt"},
    ]
    for setup in setups:
        env = {**base, **setup}
        for secret in _sent_secrets(env):
            sources = {k for k, v in env.items() if v.strip() == secret}
            assert sources <= set(LOGIN_SECRET_VARIABLES), (setup, sources)


def test_the_list_names_only_documented_variables() -> None:
    documented = {s.name for s in ENVIRONMENT} | {"BAO_TOKEN"}  # BAO_* aliases: see VAULT_*
    assert set(LOGIN_SECRET_VARIABLES) <= documented


def test_child_environment_removes_the_listed_variables_and_nothing_else() -> None:
    base = {name: f"secret-{name}" for name in LOGIN_SECRET_VARIABLES}
    kept = {"VAULT_ADDR": "https://vault:8200", "VAULTDB_ROLE": "app", "PATH": "/usr/bin",
            "VAULTDB_SECRET_ID_PATH": "/vault/secret-id", "VAULTDB_TOKEN_PATH": "/t",
            "VAULTDB_VAULT_TOKEN_PATH": "/sink", "HOME": "/home/app"}
    creds = Credentials("v-user", "pw", None, 0, datetime.now(timezone.utc), 1)
    env = child_environment({**base, **kept}, creds, ExecOptions())
    assert env == {**kept, "PGUSER": "v-user", "PGPASSWORD": "pw"}
