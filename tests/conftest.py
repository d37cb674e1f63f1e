"""Fixtures shared by every test suite.

``engine`` runs a test once on SQLite (a file in ``tmp_path``) and once on PostgreSQL (a fresh
database per test). PostgreSQL is the server named by ``ALLIANCE_PSI_TEST_PG_URL`` or else a
throwaway cluster started once per session by ``scripts/pg_test_cluster.sh``. If it cannot be
started the PostgreSQL tests fail with the script's error: they are never skipped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

PG_URL_VARIABLE = "ALLIANCE_PSI_TEST_PG_URL"
PG_SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "pg_test_cluster.sh"


def _cluster(action: str, directory: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(PG_SCRIPT), action, directory], capture_output=True, text=True, timeout=300, check=False
    )


@pytest.fixture(scope="session")
def pg_admin_engine() -> Iterator[Any]:
    """An AUTOCOMMIT engine on the test PostgreSQL server's ``postgres`` database."""
    from alliance_psi.storage import make_engine

    url = os.environ.get(PG_URL_VARIABLE)
    directory = None
    if not url:
        # Not tmp_path: the server runs as the `postgres` user, which cannot enter pytest's
        # root-owned, mode 0700 temporary directories.
        directory = tempfile.mkdtemp(prefix="alliance-psi-pg-")
        started = _cluster("start", directory)
        if started.returncode != 0:
            shutil.rmtree(directory, ignore_errors=True)
            pytest.fail(f"cannot start the test PostgreSQL cluster:\n{started.stderr.strip()}", pytrace=False)
        url = started.stdout.strip().splitlines()[-1]
    engine = make_engine(url).execution_options(isolation_level="AUTOCOMMIT")
    try:
        yield engine
    finally:
        engine.dispose()
        if directory is not None:
            _cluster("stop", directory)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """An engine with the whole schema created, on each backend in turn."""
    with backend_engine(request.param, request, tmp_path) as engine:
        yield engine


@contextlib.contextmanager
def backend_engine(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """What the ``engine`` fixture yields for ``backend`` ("sqlite" or "postgresql"), for a fixture
    that adds backends of its own (as the port contract tests add the in-memory fakes)."""
    from sqlalchemy import text

    from alliance_psi.storage import create_schema, make_engine

    if backend == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'test.db'}")
        create_schema(engine)
        yield engine
        engine.dispose()
        return
    admin = request.getfixturevalue("pg_admin_engine")
    name = f"test_{uuid.uuid4().hex[:16]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(admin.url.set(database=name).render_as_string(hide_password=False))
    try:
        create_schema(engine)
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# The alliance PKI (one CA, certificates for the usual parties) is shared by every suite.
from tests.integration.services.conftest import pki  # noqa: E402, F401
