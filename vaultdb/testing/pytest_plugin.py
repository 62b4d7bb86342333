"""pytest plugin (entry point ``vaultdb``): fixtures for the real OpenBao + PostgreSQL stack.

Loaded by every pytest run in an environment where vaultdb is installed, so importing it must
be side-effect free and cheap: nothing starts until a test requests ``vaultdb_stack``, and the
stack module (with its heavier dependencies) is imported only then.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from vaultdb.testing import VaultDBStack

__all__ = ["vaultdb_role_name", "vaultdb_stack"]


@pytest.fixture(scope="session")
def vaultdb_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VaultDBStack]:
    """One running, configured stack per test session (so per pytest-xdist worker).

    Each xdist worker has its own ``tmp_path_factory`` base directory and picks free ports,
    so workers never share servers or files. Logs stay in the workdir for post-mortems.
    """
    from vaultdb.testing import VaultDBStack

    workdir = tmp_path_factory.mktemp("vaultdb-stack")
    with VaultDBStack.start(workdir=workdir) as stack:
        yield stack


@pytest.fixture
def vaultdb_role_name(request: pytest.FixtureRequest) -> str:
    """A role name unique to this test, so tests sharing one stack never collide.

    Vault's PostgreSQL username template keeps only the first 8 characters of the role name,
    so the random part comes first to keep generated usernames distinguishable.
    """
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:24]
    return f"r{uuid.uuid4().hex[:8]}-{slug}".rstrip("-")
