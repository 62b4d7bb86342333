"""Which Redis errors mean "these credentials no longer work" (pure; redis-py's own parser)."""

from __future__ import annotations

import pytest
import redis
from redis._parsers import _RESP2Parser
from vaultdb.integrations._common import is_auth_failure


def server_error(line: str) -> redis.RedisError:
    """The exception redis-py raises for the server's error reply ``-<line>``."""
    error = _RESP2Parser(socket_read_size=65536).parse_error(line)
    assert isinstance(error, redis.RedisError)
    return error


@pytest.mark.parametrize("line", [
    "WRONGPASS invalid username-password pair or user is disabled.",  # Redis 6.2+, Valkey
    "WRONGPASS invalid username-password pair",                       # Redis 6.0
])
def test_refused_credentials(line: str) -> None:
    error = server_error(line)
    assert isinstance(error, redis.AuthenticationError)
    assert is_auth_failure(error)
    assert is_auth_failure(redis.ConnectionError("wrapped")) is False
    wrapped = redis.ConnectionError("while connecting")
    wrapped.__cause__ = error
    assert is_auth_failure(wrapped)


@pytest.mark.parametrize("error", [
    server_error("NOAUTH Authentication required."),          # no credentials were sent
    server_error("NOPERM User has no permissions to run the 'flushall' command"),
    redis.AuthenticationError("Client sent AUTH, but no password is set"),  # server config
    redis.ConnectionError("Connection closed by server."),
    redis.TimeoutError("Timeout connecting to server"),
])
def test_other_errors_are_not_refused_credentials(error: redis.RedisError) -> None:
    assert not is_auth_failure(error)
