"""Shared fixtures: one real PostgreSQL cluster and one Storage API stand-in per test session.

Modules that need an isolated database (every backup of "all tables in public" would otherwise
see other modules' tables) take `project_db_url`, a fresh Supabase-like database of their own.
"""

from __future__ import annotations

import itertools
import uuid
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from supabackup_pipeline.dev.stack import StackInfo, create_database, create_project_database
from supabackup_pipeline.dev.storage_api import StorageServer

_db_names = itertools.count(1)


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> StackInfo:
    info = create_database(tmp_path_factory.mktemp("stack"))
    server = StorageServer(
        db_url=info.storage_db_url, data_dir=info.storage_data_dir,
        jwt_secret=info.jwt_secret, port=info.storage_port,
    )
    server.start()
    info.server = server  # type: ignore[attr-defined]  # tests reach the stand-in's fault hooks here
    yield info
    server.stop()
    info.cluster.destroy()


@pytest.fixture(scope="session")
def storage_server(stack) -> StorageServer:
    return stack.server


@pytest.fixture
def storage_faults(storage_server):
    """The stand-in's fault-injection hooks, cleared after each test."""
    storage_server.faults.reset()
    yield storage_server.faults
    storage_server.faults.reset()


@pytest.fixture(scope="session")
def stack_env(stack) -> dict[str, str]:
    return stack.env()


@pytest.fixture
def supabase_client(stack_env):
    from supabase import create_client

    return create_client(stack_env["SUPABASE_URL"], stack_env["SUPABASE_SERVICE_ROLE_KEY"])


@pytest.fixture
def storage(supabase_client):
    """The official client's Storage API (storage3)."""
    return supabase_client.storage


@pytest.fixture
def storage_api(stack_env):
    """The pipeline's own Storage API client (core/storage_api.py), as the resource builds it."""
    from supabackup_pipeline.core.storage_api import StorageApi

    with StorageApi(stack_env["SUPABASE_URL"], stack_env["SUPABASE_SERVICE_ROLE_KEY"]) as api:
        yield api


@contextmanager
def bucket_maker(storage):
    """`make(name=None, **options)` makes a bucket (named `t-<random>` unless given); all are removed on exit."""
    from storage3.exceptions import StorageApiError

    created: list[str] = []

    def make(name: str | None = None, **options) -> str:
        name = name or f"t-{uuid.uuid4().hex[:10]}"
        storage.create_bucket(name, options=options or None)
        created.append(name)
        return name

    try:
        yield make
    finally:
        for name in created:
            try:
                storage.empty_bucket(name)
                storage.delete_bucket(name)
            except StorageApiError:
                pass


@pytest.fixture
def new_bucket(storage):
    """`new_bucket(**options)` makes a uniquely named bucket; every one is removed after the test."""
    with bucket_maker(storage) as make:
        yield make


@pytest.fixture(scope="module")
def new_module_bucket(stack_env):
    """`new_bucket` for module-scoped fixtures: the buckets are removed after the module."""
    from supabase import create_client

    with bucket_maker(create_client(stack_env["SUPABASE_URL"], stack_env["SUPABASE_SERVICE_ROLE_KEY"]).storage) as make:
        yield make


@pytest.fixture(scope="module")
def project_db_url(stack, request) -> str:
    """A fresh, empty Supabase-like database for this test module (connect as `postgres`)."""
    module = Path(request.module.__file__).stem.replace("test_", "")[:40]
    return create_project_database(stack.superuser_url, f"p{next(_db_names)}_{module}")


@pytest.fixture
def db(project_db_url):
    with psycopg.connect(project_db_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def backup_env(tmp_path, stack_env, project_db_url, monkeypatch) -> dict[str, str]:
    """Environment of a project whose database is this module's and whose backups go to tmp_path."""
    env = dict(stack_env, SUPABASE_DB_URL=project_db_url,
               BACKUP_PATH=str(tmp_path / "backups"), TEMP_PATH=str(tmp_path / "temp"))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env

