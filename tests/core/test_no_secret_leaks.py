"""No password or token in any log line (DEBUG included), repr, status or event."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from vaultdb import AppRoleAuth, JWTAuth, LeaseEvent, TokenAuth
from vaultdb.testing import wait_for


def test_no_secret_in_logs_reprs_or_events(make_provider, vaultdb_stack, token_file, caplog):
    caplog.set_level(logging.DEBUG)  # every logger: vaultdb, hvac, urllib3
    provider = make_provider(default_ttl=3, max_ttl=6, drain_seconds=1)
    events: list[LeaseEvent] = []
    provider.subscribe(events.append)
    first = provider.credentials()
    wait_for(lambda: provider.status().rotations >= 1 and provider.status().revocations >= 1,
             timeout=20)
    assert provider._engine.session.token is not None
    vault_token = provider._engine.session.token.token.reveal()
    provider.close()
    secrets = {first.password, token_file.read_text(), vault_token}
    secrets |= {e.credentials.password for e in events if hasattr(e, "credentials")}
    engine = provider._engine
    texts = [caplog.text, repr(provider), repr(provider.status()), repr(first), str(first),
             *(repr(e) for e in events), repr(engine.session.vault), repr(provider.auth)]
    for text in texts:
        for secret in secrets:
            assert secret not in text
    assert "password" not in repr(first)


def test_auth_reprs_hide_secrets():
    assert "s3cr3t" not in repr(TokenAuth(token="s3cr3t"))
    assert "s3cr3t" not in repr(AppRoleAuth(role_id="r", secret_id="s3cr3t"))
    assert "s3cr3t" not in repr(JWTAuth(role="r", jwt="a.s3cr3t.c"))


def test_import_starts_no_thread_and_opens_no_socket():
    code = (
        "import socket, threading\n"
        "opened = []\n"
        "orig = socket.socket.connect\n"
        "socket.socket.connect = lambda self, *a: opened.append(a) or orig(self, *a)\n"
        "import vaultdb, vaultdb.integrations, vaultdb.testing\n"
        "from vaultdb import CredentialProvider, TokenAuth\n"
        "CredentialProvider('r', auth=TokenAuth(token='t'), vault_addr='http://127.0.0.1:9')\n"
        "assert threading.active_count() == 1, threading.enumerate()\n"
        "assert not opened, opened\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_no_secret_in_frame_locals_or_chains_of_a_failed_fetch(vaultdb_stack,
                                                                 vaultdb_role_name) -> None:
    """What an error tracker records (every frame's locals, chained exceptions): an AppRole
    login whose token lacks the policy for the role, so the credentials read is refused."""
    import traceback

    from vaultdb import CredentialProvider, PermissionDeniedError

    vaultdb_stack.create_database_role(vaultdb_role_name, default_ttl=30, max_ttl=60)
    role_id, secret_id = vaultdb_stack.create_approle(vaultdb_role_name, policies=("default",))
    with CredentialProvider(vaultdb_role_name, auth=AppRoleAuth(role_id, secret_id),
                            vault_addr=vaultdb_stack.vault_addr, handle_sigterm=False,
                            fetch_timeout=3) as provider:
        with pytest.raises(PermissionDeniedError) as info:
            provider.credentials()
        error = info.value
        # The frames below this test's own (which holds the secret id to build the login).
        assert error.__traceback__ is not None
        captured = "".join(traceback.TracebackException(
            type(error), error, error.__traceback__.tb_next, capture_locals=True).format())
        token = provider._engine.session.token.token.reveal()
    assert "vaultdb/_engine.py" in captured  # the engine's frames are there, locals and all
    assert token not in captured and secret_id not in captured
    assert error.__cause__ is None
