"""Read-after-write on a real 3-node cluster whose standbys serve requests themselves.

vaultdb's transport opens one connection per request, so through the round-robin balancer
(the all-nodes Service) every request of a provider lands on the next node: the credentials
read right after a login, and the revocation right after that read, are served by nodes that
did not serve the write before them. OpenBao 2.7.2 answers every request with an
``X-Vault-Index``; a standby that has not applied the index sent back answers 429 with
``Retry-After: 1`` at once, unless the request also says ``X-Vault-Inconsistent:
forward-active-node``, when it forwards the request to the leader. vaultdb sends both, so no
attempt fails, and no login is repeated: a not-yet-replicated token is never taken for a dead
one. (Without the forwarding hint this test saw 21 such 429s, each retried after ~0.2 s.)
"""

from __future__ import annotations

import pytest

from vaultdb import AppRoleAuth, CredentialProvider, RequestInfo, TokenAuth, add_request_observer
from vaultdb.testing import VaultDBStack, database_users_of_role

pytestmark = pytest.mark.slow

ROUNDS = 6


def test_each_request_after_a_write_on_another_node(vaultdb_cluster: VaultDBStack,
                                                    vaultdb_role_name: str) -> None:
    stack, role = vaultdb_cluster, vaultdb_role_name
    cluster = stack.cluster
    stack.create_database_role(role, default_ttl=30, max_ttl=60)
    role_id, secret_id = stack.create_approle(f"{role}-login")
    cluster.wait_replicated()  # the role and the AppRole are everywhere: the writes under
    before = cluster.balancer.connections.copy()  # test are the provider's own
    seen: list[RequestInfo] = []
    remove = add_request_observer(seen.append)
    try:
        for _ in range(ROUNDS):
            # A login (a token written on the leader) followed at once by a read with it.
            with CredentialProvider(role, auth=AppRoleAuth(role_id=role_id, secret_id=secret_id),
                                    vault_addr=cluster.addr, handle_sigterm=False) as p:
                assert p.credentials(timeout=30).username
            # A token created a moment ago through the leader, used at once anywhere.
            token = stack.create_token(ttl=60)
            with CredentialProvider(role, auth=TokenAuth(token=token), vault_addr=cluster.addr,
                                    handle_sigterm=False) as p:
                assert p.credentials(timeout=30).username
    finally:
        remove()
    failed = [(i.method, i.path, i.status, i.outcome) for i in seen if i.outcome != "ok"]
    assert not failed
    logins = [i for i in seen if i.path.startswith("auth/approle/login")]
    assert len(logins) == ROUNDS  # never re-logged in for a token "not found" on a standby
    served = cluster.balancer.connections - before
    assert len(served) == len(cluster.nodes), served  # every node took its share
    assert database_users_of_role(stack, role) == set()  # every lease revoked, across nodes
