"""Every environment variable vaultdb reads is documented."""

from __future__ import annotations

import re
from pathlib import Path

from vaultdb.settings import ENVIRONMENT

ROOT = Path(__file__).resolve().parents[2]


def test_every_setting_is_in_the_configuration_reference():
    text = (ROOT / "docs" / "configuration.md").read_text()
    missing = [s.name for s in ENVIRONMENT if f"`{s.name}`" not in text]
    assert not missing, f"document these in docs/configuration.md: {missing}"


def test_every_variable_read_in_the_code_is_in_the_settings_table():
    names = {s.name for s in ENVIRONMENT}
    used: set[str] = set()
    for path in (ROOT / "vaultdb").rglob("*.py"):
        if "testing" in path.parts:
            continue
        used |= set(re.findall(r"\"((?:VAULT|VAULTDB)_[A-Z_]+)\"", path.read_text()))
    # Variables the demo passes to its own pod processes are internal, not settings.
    used = {name for name in used if not name.startswith(("VAULTDB_DEMO_", "VAULTDB_TEST_"))}
    assert used <= names, f"add to vaultdb/settings.py ENVIRONMENT: {sorted(used - names)}"


def test_every_url_parameter_is_in_the_configuration_reference():
    text = (ROOT / "docs" / "configuration.md").read_text()
    missing = [s.url_param for s in ENVIRONMENT
               if s.url_param and f"| `{s.name}` | `{s.url_param}` |" not in text]
    assert not missing, f"document these URL parameters in docs/configuration.md: {missing}"
