"""Shared fixtures: a real database per test, SQLite file or a private PostgreSQL schema."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from cycle_helpers import Project
from smtp_server import SmtpServer
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from playbookd.store.database import connect

PG_URL = os.environ.get("PLAYBOOKD_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@cache
def _pg_problem() -> str | None:
    """Why PostgreSQL cannot be used, or None when it can."""
    try:
        engine = create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # any failure to reach it means: skip, not fail
        return f"PostgreSQL at {PG_URL} unreachable: {exc.__class__.__name__}"
    return None


@contextmanager
def _pg_schema() -> Iterator[str]:
    problem = _pg_problem()
    if problem:
        pytest.skip(problem)
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        # the search_path in the URL reaches every connection, pools and replicas included
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]) -> Iterator[str]:
    """A database URL nobody else uses: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/test.db"
        return
    with _pg_schema() as url:
        yield url


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL schema only (for what needs several processes on one database)."""
    with _pg_schema() as url:
        yield url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """The schema created in the test's database."""
    engine = connect(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Any]:
    """Build in-process projects (see cycle_helpers.Project); their engines are closed afterwards."""
    made: list[Project] = []

    def build(playbooks: dict[str, str], **kw: Any) -> Project:
        made.append(Project(tmp_path, playbooks, **kw))
        return made[-1]

    yield build
    for project in made:
        project.engine.dispose()
