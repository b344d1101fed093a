"""schemathesis, as a hostile client, against each service's own OpenAPI document: every phase
(examples, coverage, fuzzing, stateful), the checks of `schemathesis_run.CHECKS`, a fixed time
budget per service (SCHEMATHESIS_SECONDS, default 30), on PostgreSQL. 0 failures is the bar."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from shared.routes import SERVICES
from shared.testing.fixtures import fresh_postgres_database

from .schemathesis_run import fuzz, running_platform

pytestmark = pytest.mark.integration
SECONDS = int(os.environ.get("SCHEMATHESIS_SECONDS", "30"))


@pytest.fixture(scope="module")
def platform_url() -> Iterator[str]:
    with ExitStack() as stack:
        urls = {name: stack.enter_context(fresh_postgres_database()) for name in SERVICES}
        yield stack.enter_context(running_platform(urls))


@pytest.mark.timeout(SECONDS * 4 + 180)
@pytest.mark.parametrize("service", SERVICES)
def test_no_check_fails(platform_url: str, service: str) -> None:
    outcome = fuzz(platform_url, service, SECONDS)
    assert outcome.returncode == 0, outcome.output[-20000:]
    assert "Tested:" in outcome.output, outcome.output[-5000:]  # it ran operations, not nothing
