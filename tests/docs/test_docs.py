"""The documentation site: it builds strictly, and its Python code is valid.

Every ```python block in docs/*.md and README.md is compiled; a block preceded by the line
``<!-- docs-test: run -->`` is also executed (in a fresh interpreter, so it must be
self-contained).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
RUN_MARK = "<!-- docs-test: run -->"
FENCE = re.compile(r"^(?P<indent>[ \t]*)```python[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
                   re.MULTILINE | re.DOTALL)


def python_blocks() -> list[tuple[str, int, str, bool]]:
    """(file, line, code, run) for every python block."""
    blocks = []
    for path in [*sorted(DOCS.glob("*.md")), ROOT / "README.md"]:
        text = path.read_text()
        for match in FENCE.finditer(text):
            indent = match["indent"]
            body = "".join(line[len(indent):] if line.startswith(indent) else line
                           for line in match["body"].splitlines(keepends=True))
            before = text[:match.start()].rstrip().splitlines()
            run = bool(before) and before[-1].strip() == RUN_MARK
            line = text.count("\n", 0, match.start()) + 1
            blocks.append((str(path.relative_to(ROOT)), line, body, run))
    return blocks


BLOCKS = python_blocks()


def test_there_are_python_blocks_and_some_run() -> None:
    assert len(BLOCKS) >= 10
    assert any(run for *_, run in BLOCKS)


@pytest.mark.parametrize(("where", "line", "code", "run"), BLOCKS,
                         ids=[f"{w}:{n}" for w, n, _, _ in BLOCKS])
def test_python_block(where: str, line: int, code: str, run: bool) -> None:
    compile(code, f"{where}:{line}", "exec")
    if run:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=60, check=False, cwd=ROOT)
        assert done.returncode == 0, f"{where}:{line}\n{done.stdout}\n{done.stderr}"


def test_every_page_is_in_the_nav_and_every_nav_entry_exists() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text().replace("!!python", "#"))

    def pages(nav: object) -> list[str]:
        if isinstance(nav, str):
            return [nav]
        if isinstance(nav, list):
            return [p for item in nav for p in pages(item)]
        if isinstance(nav, dict):
            return [p for value in nav.values() for p in pages(value)]
        return []

    listed = pages(config["nav"])
    assert all((DOCS / page).is_file() for page in listed), listed
    assert {p.name for p in DOCS.glob("*.md")} == set(listed)


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or "mkdocs"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run([mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    reference = (tmp_path / "site" / "reference" / "index.html").read_text()
    for name in ("CredentialProvider", "instrument", "LeaseRotated", "VaultUnavailableError"):
        assert name in reference
    kubernetes = (tmp_path / "site" / "kubernetes" / "index.html").read_text()
    assert "terminationGracePeriodSeconds" in kubernetes  # the manifest was embedded
