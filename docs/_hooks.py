"""MkDocs hook: let mkdocstrings find ``vaultdb.integrations`` where the package installs it.

``integrations/`` sits at the top of the repository and becomes ``vaultdb.integrations`` only
through the ``package-dir`` mapping in pyproject.toml, which griffe's static loader does not
know. This hook builds ``build/api-src/vaultdb``: symlinks to every entry of ``vaultdb/`` plus
``integrations`` -> ``../../../integrations``, the layout of an installed wheel, and
mkdocs.yml points mkdocstrings at it. ``build/`` is git-ignored.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "build" / "api-src" / "vaultdb"


def build_api_sources() -> Path:
    if TARGET.exists() or TARGET.is_symlink():
        shutil.rmtree(TARGET)
    TARGET.mkdir(parents=True)
    for entry in (ROOT / "vaultdb").iterdir():
        if entry.name != "__pycache__":
            (TARGET / entry.name).symlink_to(entry)
    (TARGET / "integrations").symlink_to(ROOT / "integrations")
    return TARGET.parent


build_api_sources()  # at import: before mkdocstrings' handler is created


def on_config(config: Any) -> Any:
    build_api_sources()
    return config
