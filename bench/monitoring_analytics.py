"""`python -m bench.monitoring_analytics [rows]`: monitoring's analytics timed in process (Flask
test client, no gateway) on a fresh PostgreSQL database bulk-loaded with `rows` metrics records
(default 1,000,000), to see the database and Python cost of each view without the HTTP stack.
`make bench` measures the same paths through nginx. Needs TEST_DATABASE_ADMIN_URL (the Makefile's
default points at the local PostgreSQL)."""

from __future__ import annotations

import os
import statistics
import sys
import time
import uuid

from sqlalchemy import create_engine, make_url, text

from services.monitoring.app import create_app
from services.monitoring.container import bootstrap
from shared.events.inprocess_bus import InProcessBus
from shared.testing.fixtures import Auth, make_settings

from .scenarios import monitoring_load

VIEWS = (
    "performance-by-type/?days=30",
    "performance-by-type/?days=90",
    "anomalies/?days=7",
    "anomalies/?days=30&metric=cost_usd",
    "anomalies/?days=90&metric=memory_usage_mb",
    "dashboard/?days=30",
    "trends/?days=30",
    "recommendations/",
)
REPEATS = 20


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    admin_url = make_url(
        os.environ.get("TEST_DATABASE_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1/postgres")
    )
    name = f"taskhub_analytics_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    try:
        container = bootstrap(make_settings("monitoring", url), bus=InProcessBus(prefix="bench."))
        app = create_app(container=container)  # migrates the new database
        started = time.perf_counter()
        monitoring_load.load(url, rows)
        print(f"loaded {rows} records in {time.perf_counter() - started:.0f} s")
        client, headers = app.test_client(), Auth().headers(role="viewer")
        for view in VIEWS:
            times = []
            for i in range(REPEATS + 3):
                started = time.perf_counter()
                response = client.get("/tasks/monitoring/metrics/" + view, headers=headers)
                if response.status_code != 200:
                    raise RuntimeError(f"{view}: {response.status_code} {response.text[:200]}")
                if i >= 3:  # the first calls warm caches
                    times.append((time.perf_counter() - started) * 1000)
            print(f"{view:45s} median {statistics.median(times):6.1f} ms   max {max(times):6.1f} ms")
        container.ctx.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
