"""Where vaultdb.testing finds PostgreSQL's binaries (pgserver has no wheels for 3.13+).

Pure lookup logic: the pgserver package and the Debian layout are hidden with monkeypatch, and
``postgres`` on ``PATH`` is a symlink into a directory of stand-in files (nothing is run).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from vaultdb.testing import _postgres


@pytest.fixture
def nothing_installed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    real_find_spec = importlib.util.find_spec
    monkeypatch.delenv("VAULTDB_PG_BIN", raising=False)
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "pgserver" else real_find_spec(name, *a))
    monkeypatch.setattr(_postgres.glob, "glob", lambda pattern: [])
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    return empty


def test_postgres_on_path_is_followed_to_its_real_directory(
        nothing_installed: Path, tmp_path: Path) -> None:
    real = tmp_path / "pg" / "16" / "bin"
    real.mkdir(parents=True)
    for name in ("postgres", "initdb"):
        (real / name).write_text("#!/bin/sh\n")
        (real / name).chmod(0o755)
    (nothing_installed / "postgres").symlink_to(real / "postgres")
    assert _postgres.find_pg_bin() == real.resolve()


def test_no_postgres_anywhere_names_the_three_ways_out(nothing_installed: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        _postgres.find_pg_bin()
    message = str(info.value)
    assert "pgserver" in message and "install PostgreSQL" in message
    assert "VAULTDB_PG_BIN" in message


def test_vaultdb_pg_bin_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "postgres").write_text("")
    monkeypatch.setenv("VAULTDB_PG_BIN", str(tmp_path))
    assert _postgres.find_pg_bin() == tmp_path
