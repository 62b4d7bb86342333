"""The built wheel ships ``integrations/`` as ``vaultdb.integrations`` and the type marker."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_contains_integrations_as_vaultdb_integrations(tmp_path: Path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path), str(ROOT)], check=True, timeout=300,
                   capture_output=True)
    wheel = next(tmp_path.glob("vaultdb_creds-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "vaultdb/py.typed" in names
    assert "vaultdb/integrations/__init__.py" in names
    assert "vaultdb/integrations/django/postgresql/__init__.py" in names
    assert "vaultdb/testing/pytest_plugin.py" in names
    assert not any(n.startswith("integrations/") for n in names)
    # Import from the wheel itself (zipimport), ahead of the editable install.
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import vaultdb.integrations as i; "
            "print(i.__file__)")
    out = subprocess.run([sys.executable, "-c", code, str(wheel)], capture_output=True,
                         text=True, timeout=60, check=True)
    assert str(wheel) in out.stdout
