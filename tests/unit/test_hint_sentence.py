"""Hints printed by the command line read as sentences (they follow "Check:" in exceptions)."""

from __future__ import annotations

import pytest

from vaultdb.cli import error_lines, hint_sentence
from vaultdb.errors import ConfigurationError


@pytest.mark.parametrize(("hint", "sentence"), [
    ("set VAULTDB_ROLE or pass --role", "Set VAULTDB_ROLE or pass --role."),
    ("VAULT_ADDR, DNS and network policy", "Check VAULT_ADDR, DNS and network policy."),
    ("that role 'web' exists", "Check that role 'web' exists."),
    ("one of kubernetes, jwt, approle, token", "Use one of kubernetes, jwt, approle, token."),
    ("VAULT_ADDR must start with https://", "VAULT_ADDR must start with https://"),
    ("nothing: vaultdb fetches fresh credentials",
     "Nothing: vaultdb fetches fresh credentials."),
    ('add to p: path "x" { capabilities = ["read"] }',
     'Add to p: path "x" { capabilities = ["read"] }'),
    ("Check the mount's tuning.", "Check the mount's tuning."),
])
def test_hint_sentence(hint: str, sentence: str) -> None:
    assert hint_sentence(hint) == sentence


def test_error_lines_print_the_hint_as_a_sentence() -> None:
    lines = error_lines(ConfigurationError("No role.", hint="set VAULTDB_ROLE or pass --role"))
    assert lines == ["No role.", "hint: Set VAULTDB_ROLE or pass --role."]
