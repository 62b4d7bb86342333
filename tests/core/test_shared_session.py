"""One LoginSession for several providers (two roles), on the real stack.

One login and one token renewal stream serve both roles; each lease is still its own; closing
one provider never revokes its sibling's lease; the last one out revokes the token.
"""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path

from vaultdb import (
    CredentialProvider,
    KubernetesAuth,
    LoginRenewed,
    LoginSession,
    RequestInfo,
    add_request_observer,
)
from vaultdb.testing import VaultDBStack, database_users_of_role, wait_for


def test_two_roles_share_one_login_and_one_renewal_stream(
        vaultdb_stack: VaultDBStack, vaultdb_role_name: str, tmp_path: Path) -> None:
    ro, rw = f"{vaultdb_role_name[:20]}-ro", f"{vaultdb_role_name[:20]}-rw"
    for role in (ro, rw):
        vaultdb_stack.create_database_role(role, default_ttl=60, max_ttl=120)
    vaultdb_stack.create_kubernetes_role(vaultdb_role_name, token_ttl=3, token_max_ttl=600)
    token_path = vaultdb_stack.write_service_account_token(tmp_path / "sa" / "token")
    seen: list[RequestInfo] = []
    renew_times: list[float] = []

    def observe(info: RequestInfo) -> None:
        seen.append(info)
        if info.path == "auth/token/renew-self":
            renew_times.append(time.monotonic())

    remove = add_request_observer(observe)
    session = LoginSession(KubernetesAuth(role=vaultdb_role_name, token_path=str(token_path)),
                           vault_addr=vaultdb_stack.vault_addr)
    reader = CredentialProvider(ro, session=session, handle_sigterm=False, drain_seconds=1)
    writer = CredentialProvider(rw, session=session, handle_sigterm=False, drain_seconds=1)
    try:
        renewed = threading.Event()
        writer.subscribe(lambda _e: renewed.set(), LoginRenewed)
        ro_creds, rw_creds = reader.credentials(), writer.credentials()
        assert ro_creds.username != rw_creds.username
        # The 3 s token is renewed at ~2 s; both providers plan it, the session does it once.
        wait_for(renewed.is_set, timeout=20)
        wait_for(lambda: sum(i.path == "auth/token/renew-self" for i in seen) >= 3, timeout=30)
        assert len([i for i in seen if i.path.endswith("/login")]) == 1
        # One stream: renewals come about 2 s apart (2/3 of the 3 s TTL), never in pairs as
        # two providers each renewing would make them.
        gaps = [b - a for a, b in itertools.pairwise(renew_times)]
        assert min(gaps) > 1.0, gaps
        assert reader.status().logins == writer.status().logins == 1
        reader.close()
        # The sibling's lease and the token survive; only the reader's user is gone.
        users = database_users_of_role(vaultdb_stack, rw)
        assert rw_creds.username in users
        assert ro_creds.username not in database_users_of_role(vaultdb_stack, ro)
        assert writer.credentials().username == rw_creds.username
        assert not [i for i in seen if i.path == "auth/token/revoke-self"]
    finally:
        writer.close()
        remove()
    assert [i.path for i in seen].count("auth/token/revoke-self") == 1
    assert rw_creds.username not in database_users_of_role(vaultdb_stack, rw)
