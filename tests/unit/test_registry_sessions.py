"""Providers built from settings share a login session when their login settings match.

Construction does no I/O, so this is pure logic; tests/core/test_shared_session.py shows one
login and one renewal stream on the real stack.
"""

from __future__ import annotations

from vaultdb._registry import shared_provider

ENV = {"VAULT_ADDR": "http://127.0.0.1:1", "VAULT_TOKEN": "t", "VAULTDB_HANDLE_SIGTERM": "false"}


def test_two_roles_with_the_same_login_share_one_session() -> None:
    reader = shared_provider(ENV, role="shared-ro")
    writer = shared_provider(ENV, role="shared-rw")
    assert reader is not writer
    assert reader.session is writer.session


def test_a_different_login_or_session_name_gets_its_own_session() -> None:
    base = shared_provider(ENV, role="apart-a")
    other_vault = shared_provider({**ENV, "VAULT_ADDR": "http://127.0.0.1:2"}, role="apart-b")
    named = shared_provider({**ENV, "VAULTDB_LOGIN_SESSION": "batch"}, role="apart-c")
    named_too = shared_provider(ENV, role="apart-d", login_session="batch")
    assert len({id(base.session), id(other_vault.session), id(named.session)}) == 3
    assert named_too.session is named.session


def test_django_aliases_with_matching_auth_share_a_session() -> None:
    from vaultdb.integrations.django.registry import get_provider

    auth = {"method": "token", "token": "t"}
    common = {"vault_addr": "http://127.0.0.1:3", "auth": auth, "handle_sigterm": False}
    default = get_provider({"VAULT": {**common, "role": "dj-rw"}})
    replica = get_provider({"VAULT": {**common, "role": "dj-ro"}})
    batch = get_provider({"VAULT": {**common, "role": "dj-batch", "login_session": "batch"}})
    assert default.session is replica.session
    assert batch.session is not default.session
