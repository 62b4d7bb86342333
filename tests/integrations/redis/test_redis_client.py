"""redis-py clients and pools on a real redis-server whose ACL users come from OpenBao."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

import pytest
import redis
import redis.asyncio
from redis.backoff import NoBackoff
from redis.retry import Retry
from vaultdb.integrations.redis import RedisCredentials, attach, from_url, from_url_async

from vaultdb import CredentialProvider, ProviderClosedError
from vaultdb.events import LeaseCreated, LeaseRotated
from vaultdb.testing import VaultDBStack, VaultRedis, revoked_usernames, wait_for

NO_RETRY = Retry(NoBackoff(), 0)  # redis-py's retries would hide a failed login
# get_connection() needs a command name before redis-py 5.3 and warns about one after it.
CHECKOUT = ("PING",) if redis.VERSION < (5, 3) else ()


def revoke_now(stack: VaultDBStack, kit: VaultRedis, lease_id: str, user: str) -> None:
    """Revoke a lease behind the provider's back (as a Vault restart or an operator would)."""
    stack.root_client().write_data("sys/leases/revoke", data={"lease_id": lease_id,
                                                              "sync": True})
    wait_for(lambda: user not in kit.server.acl_users(), timeout=10)


def test_one_acl_user_per_process_and_revoked_at_close(
        vaultdb_redis: VaultRedis, vaultdb_role_name: str,
        make_provider: Callable[..., CredentialProvider]) -> None:
    provider = make_provider(default_ttl=60, max_ttl=120)
    sync_client = from_url(vaultdb_redis.url(), provider=provider, decode_responses=True)
    plain = redis.Redis(host=vaultdb_redis.server.host, port=vaultdb_redis.server.port,
                        credential_provider=RedisCredentials(provider), decode_responses=True)

    async def whoami_async() -> str:
        client = from_url_async(vaultdb_redis.url(), provider=provider, decode_responses=True)
        try:
            return str(await client.acl_whoami())
        finally:
            await client.aclose()

    users = {sync_client.acl_whoami(), plain.acl_whoami(), asyncio.run(whoami_async())}
    assert users == {provider.credentials().username}
    assert vaultdb_redis.users_of_role(vaultdb_role_name) == users
    assert vaultdb_redis.server.clients()[users.pop()] == 2
    provider.close()
    assert vaultdb_redis.users_of_role(vaultdb_role_name) == set()
    assert not {u for u in vaultdb_redis.server.clients() if u.startswith("V_")} & users
    with pytest.raises(ProviderClosedError):  # reconnecting needs credentials: a typed error
        plain.execute_command("PING")


@pytest.mark.parametrize("flavour", ["sync", "asyncio"])
def test_idle_connections_are_closed_at_rotation_before_revocation(
        vaultdb_redis: VaultRedis, make_provider: Callable[..., CredentialProvider],
        flavour: str) -> None:
    provider = make_provider()
    seen: list[tuple[int, bool]] = []
    failures: list[BaseException] = []
    rotated = threading.Event()

    def on_rotated(event: LeaseRotated) -> None:
        """Runs after the adapter's listener, while the old user still has its drain window."""
        old = event.previous.username
        try:
            wait_for(lambda: vaultdb_redis.server.clients().get(old, 0) <= 1, timeout=10)
            seen.append((vaultdb_redis.server.clients().get(old, 0),
                         old in vaultdb_redis.server.acl_users()))
        except BaseException as exc:
            failures.append(exc)
        rotated.set()

    if flavour == "sync":
        client = from_url(vaultdb_redis.url(), provider=provider, decode_responses=True)
        pool = client.connection_pool
        conns = [pool.get_connection(*CHECKOUT) for _ in range(4)]
        first = conns[0].credential_provider.get_credentials()[0]
        provider.subscribe(on_rotated, LeaseRotated)
        held = conns.pop()
        for conn in conns:
            pool.release(conn)
        assert rotated.wait(20)
        pool.release(held)  # given back after the rotation: replaced at its next checkout
        assert client.acl_whoami() != first
    else:
        async def main() -> None:
            client = from_url_async(vaultdb_redis.url(), provider=provider,
                                    decode_responses=True)
            pool = client.connection_pool
            conns = [await pool.get_connection(*CHECKOUT) for _ in range(4)]
            first = await conns[0].credential_provider.get_credentials_async()
            provider.subscribe(on_rotated, LeaseRotated)
            held = conns.pop()
            for conn in conns:
                await pool.release(conn)
            while not rotated.is_set():
                await asyncio.sleep(0.05)
            await pool.release(held)
            assert await client.acl_whoami() != first[0]
            await client.aclose()

        asyncio.run(asyncio.wait_for(main(), timeout=30))
    assert failures == []
    # Only the connection a caller held was still logged in as the old user, which existed.
    assert seen == [(1, True)]


@pytest.mark.parametrize("flavour", ["sync", "asyncio"])
def test_revoked_user_is_refreshed_once_at_connect(
        vaultdb_stack: VaultDBStack, vaultdb_redis: VaultRedis,
        make_provider: Callable[..., CredentialProvider], flavour: str,
        caplog: pytest.LogCaptureFixture) -> None:
    provider = make_provider(default_ttl=60, max_ttl=120)  # the renewer stays out of the way
    before = provider.credentials()

    async def whoami_async() -> str:
        client = from_url_async(vaultdb_redis.url(), provider=provider, retry=NO_RETRY)
        try:
            return str(await client.acl_whoami())
        finally:
            await client.aclose()

    def whoami() -> str:
        if flavour == "asyncio":
            return asyncio.run(whoami_async())
        return str(from_url(vaultdb_redis.url(), provider=provider, retry=NO_RETRY).acl_whoami())

    first = whoami()
    revoke_now(vaultdb_stack, vaultdb_redis, str(before.lease_id), before.username)
    with caplog.at_level(logging.WARNING, "vaultdb.integrations"):
        second = whoami()  # a new connection: refused, refreshed, retried
    assert first == before.username
    assert second == provider.credentials().username != before.username
    assert provider.generation == before.generation + 1
    assert caplog.text.count("retrying once") == 1


def test_login_refused_for_another_reason_does_not_fetch_leases_in_a_loop(
        vaultdb_redis: VaultRedis, make_provider: Callable[..., CredentialProvider]) -> None:
    # "off" after the plugin's own "on": Vault creates users that may never log in.
    provider = make_provider(default_ttl=60, max_ttl=120, acl_rules=("~*", "+@all", "off"))
    client = from_url(vaultdb_redis.url(), provider=provider, retry=NO_RETRY)
    for _ in range(3):
        with pytest.raises(redis.AuthenticationError):
            client.ping()
    # One refresh after the first refusal; the refreshed credentials were refused too, so
    # the later attempts do not ask Vault again.
    assert provider.status().rotations == 1


def test_no_password_in_logs_reprs_or_errors(
        vaultdb_stack: VaultDBStack, vaultdb_redis: VaultRedis,
        make_provider: Callable[..., CredentialProvider],
        caplog: pytest.LogCaptureFixture) -> None:
    provider = make_provider()
    passwords: list[str] = []
    provider.subscribe(lambda e: passwords.append(e.credentials.password), LeaseCreated)
    caplog.set_level(logging.DEBUG)
    client = from_url(vaultdb_redis.url(), provider=provider, retry=NO_RETRY)
    client.set("k", "v")
    generation = provider.credentials().generation
    wait_for(lambda: provider.generation != generation, timeout=15)
    client.get("k")  # replaced at checkout
    creds = provider.credentials()
    revoke_now(vaultdb_stack, vaultdb_redis, str(creds.lease_id), creds.username)
    client.get("k")  # refused, refreshed, retried
    conn = client.connection_pool.get_connection(*CHECKOUT)
    failing = redis.Redis(host=vaultdb_redis.server.host, port=vaultdb_redis.server.port,
                          username=creds.username, password=creds.password)
    with pytest.raises(redis.AuthenticationError) as refused:
        failing.ping()
    assert len(passwords) >= 3
    texts = [caplog.text, repr(client), repr(client.connection_pool), repr(conn),
             repr(conn.credential_provider), repr(provider), str(refused.value),
             repr(refused.value)]
    assert "rotation: idle connections" in caplog.text
    for password in passwords:
        for text in texts:
            assert password not in text


def test_attach_replaces_a_configured_password_and_refuses_twice(
        vaultdb_redis: VaultRedis, make_provider: Callable[..., CredentialProvider],
        caplog: pytest.LogCaptureFixture) -> None:
    provider = make_provider(default_ttl=60, max_ttl=120)
    pool = redis.BlockingConnectionPool.from_url(
        f"redis://someone:not-this@{vaultdb_redis.server.host}:{vaultdb_redis.server.port}/0")
    with caplog.at_level(logging.WARNING, "vaultdb.integrations"):
        attach(pool, provider)
    assert "replaces it" in caplog.text and "not-this" not in caplog.text
    assert redis.Redis(connection_pool=pool).acl_whoami() == provider.credentials().username
    with pytest.raises(ValueError, match="already attached"):
        attach(redis.Redis(connection_pool=pool), provider)
    with pytest.raises(TypeError, match="not str"):
        attach("redis://localhost", provider)  # type: ignore[type-var]


def test_pubsub_is_cut_at_revocation_and_resubscribes_as_the_current_user(
        vaultdb_redis: VaultRedis, make_provider: Callable[..., CredentialProvider]) -> None:
    """A PubSub holds its connection, so the pool cannot retire it: revoking the old user
    cuts it, one call raises ``ConnectionError``, the next logs in again and resubscribes."""
    provider = make_provider()
    revoked = revoked_usernames(provider)
    client = from_url(vaultdb_redis.url(), provider=provider, decode_responses=True)
    pubsub = client.pubsub()
    pubsub.subscribe("news")
    first = provider.credentials().username
    received: list[str] = []
    errors: list[BaseException] = []
    mark: list[int] = []  # how many messages had arrived when the first user was revoked

    def exchange() -> bool:
        client.publish("news", "hello")
        try:
            message = pubsub.get_message(timeout=0.2)
        except redis.ConnectionError as exc:
            errors.append(exc)
            return False
        if message is not None and message["type"] == "message":
            received.append(message["data"])
        if first in revoked and not mark:
            mark.append(len(received))
        return bool(mark) and len(received) > mark[0] + 1

    wait_for(exchange, timeout=30, interval=0.05)
    assert len(errors) <= 1
    assert first not in vaultdb_redis.server.clients()
    pubsub.close()
