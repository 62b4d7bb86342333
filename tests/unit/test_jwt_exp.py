"""A JWT whose ``exp`` is not a number is a typed error (never a crash, never ignored)."""

from __future__ import annotations

import base64
import json

import pytest

from vaultdb.auth import jwt_expiry
from vaultdb.errors import ConfigurationError


def jwt(claims_json: str) -> str:
    def part(text: str) -> str:
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    return f"{part(json.dumps({'alg': 'RS256'}))}.{part(claims_json)}.c2lnbmF0dXJl"


def test_a_numeric_exp_is_read_and_a_missing_one_is_none() -> None:
    assert jwt_expiry(jwt('{"exp": 1700000000}')) == 1700000000.0
    assert jwt_expiry(jwt('{"exp": 1700000000.5}')) == 1700000000.5
    assert jwt_expiry(jwt('{"sub": "x"}')) is None
    assert jwt_expiry("not-a-jwt") is None


@pytest.mark.parametrize("exp", ['"1700000000"', '"soon"', "NaN", "Infinity", "[1]", "true",
                                 "1" + "0" * 400, "{}"])
def test_an_exp_that_is_not_a_number_is_a_configuration_error(exp: str) -> None:
    with pytest.raises(ConfigurationError, match="exp claim is not a number"):
        jwt_expiry(jwt(f'{{"exp": {exp}, "secret": "s3cr3t"}}'))
