"""pytest fixtures every test suite shares (loaded by the root conftest.py).

Real services come from the environment: TEST_DATABASE_ADMIN_URL (a PostgreSQL URL allowed to
create databases) and TEST_AMQP_URL. Each test gets its own database and its own broker prefix,
so tests never depend on each other or on their order. Without a URL the tests that need the
service skip, except under CI=true, where they fail: CI must never pass by skipping."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any
from urllib.parse import urlparse

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from shared.auth import mint_token
from shared.config import Settings, load_settings
from shared.db import normalize_url
from shared.testing.broker_cleanup import delete_prefixed

JWT_SECRET = "test-secret-" + "x" * 40
DEFAULT_BRAND = {"id": 9, "name": "Humari"}
OTHER_BRAND = {"id": 10, "name": "Other"}


def _reachable(url: str) -> bool:
    parsed = urlparse(url.replace("+psycopg", ""))
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 5432), timeout=2):
            return True
    except OSError:
        return False


def require_service(env_name: str) -> str:
    url = os.environ.get(env_name)
    if url and _reachable(url):
        return url
    message = f"{env_name} is not set or not reachable"
    if os.environ.get("CI") == "true":
        pytest.fail(message + " (CI must run the integration tests)")
    pytest.skip(message)


def wait_until(
    predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05, message: str = ""
) -> Any:
    """Poll `predicate` until it returns something truthy, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s: {message} (last value: {last!r})")


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database, dropped on exit. The admin connection is not pooled: a
    database that outlives a PostgreSQL restart (the restart test) is still dropped."""
    admin_url = normalize_url(require_service("TEST_DATABASE_ADMIN_URL"))
    name = f"taskhub_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    base = admin_url.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test, dropped afterwards."""
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture
def postgres_databases() -> Iterator[Callable[[], str]]:
    """A factory of fresh databases, for a test that runs several services (one database each)."""
    with ExitStack() as stack:
        yield lambda: stack.enter_context(fresh_postgres_database())


@pytest.fixture
def amqp_url() -> str:
    return require_service("TEST_AMQP_URL")


_used_prefixes: list[str] = []


@pytest.fixture
def bus_prefix() -> Iterator[str]:
    """A broker prefix of this test's own; its queues and exchanges are deleted afterwards
    (a few tests' worth at a time, and the rest when the session ends)."""
    prefix = f"t{uuid.uuid4().hex[:8]}."
    yield prefix
    _used_prefixes.append(prefix)
    if len(_used_prefixes) >= 4:
        flush_broker_prefixes()


def flush_broker_prefixes() -> None:
    delete_prefixed(list(_used_prefixes))
    _used_prefixes.clear()


@pytest.fixture
def sqlite_url(tmp_path: Any) -> Callable[[str], str]:
    return lambda service: f"sqlite:///{tmp_path / f'{service}.db'}"


def make_settings(
    service: str, database_url: str, amqp_url: str | None = None, prefix: str = "t.", **extra: str
) -> Settings:
    env = {
        "JWT_SECRET": JWT_SECRET,
        f"{service.upper()}_DATABASE_URL": database_url,
        "AMQP_PREFIX": prefix,
        "LOG_FORMAT": "console",
    }
    if amqp_url:
        env["AMQP_URL"] = amqp_url
    env.update(extra)
    return load_settings(service, env)


class Auth:
    """Headers for a caller: `auth.headers(role="viewer", brand=OTHER_BRAND)`."""

    def token(self, role: str = "admin", brands: list[dict[str, Any]] | None = None, **claims: Any) -> str:
        brands = brands if brands is not None else [{**DEFAULT_BRAND, "role": role}]
        return mint_token(JWT_SECRET, brands=brands, sub="1", username="martin", **claims)

    def headers(
        self, role: str = "admin", brand: dict[str, Any] = DEFAULT_BRAND, **extra: str
    ) -> dict[str, str]:
        token = self.token(role, [{**brand, "role": role}])
        return {"Authorization": f"Bearer {token}", "X-Brand-ID": str(brand["id"]), **extra}


@pytest.fixture
def auth() -> Auth:
    return Auth()
