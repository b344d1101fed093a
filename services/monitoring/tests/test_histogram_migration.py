"""Revision 0003 counts the records that exist when it runs into the histograms it creates. It
carries its own copy of the bucket scheme (a revision never imports application code): that copy
must still count exactly as today's metrics/histogram.py does, or the histograms of an upgraded
database would disagree with the ones kept on the way."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, MetaData, insert, select

from services.monitoring.metrics import histogram
from services.monitoring.models import MetricsHistogram as H
from shared.db import make_engine
from shared.migrations import upgrade


def records(count: int) -> list[dict[str, Any]]:
    rng = random.Random(15)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    rows = []
    for n in range(count):
        at = start + timedelta(hours=rng.randrange(0, 24 * 5), minutes=rng.randrange(60))
        rows.append(
            {
                "brand_id": rng.choice([9, 10]),
                "base_task": n + 1,
                "task_id": f"task_{n}",
                "task_type": rng.choice(["seo.analysis", "ai.content"]),
                "priority": "normal",
                "execution_time_ms": rng.choice([0.0, 0.5e-6, rng.uniform(0, 50_000)]),
                "memory_usage_mb": rng.uniform(0, 4096),
                "cpu_usage_percent": rng.uniform(0, 400),
                "network_bytes_sent": rng.randrange(0, 10**9),
                "network_bytes_received": rng.randrange(0, 10**6),
                "disk_io_bytes": rng.randrange(0, 10**7),
                "api_calls_count": rng.randrange(0, 50),
                "tokens_used": rng.randrange(0, 10_000),
                "cost_usd": rng.choice([0.0, 0.001, 0.25]),
                "error_count": rng.randrange(0, 3),
                "warning_count": rng.randrange(0, 3),
                "retry_count": rng.randrange(0, 3),
                "worker_name": "w1",
                "queue_wait_time_ms": rng.uniform(0, 2000),
                "performance_score": rng.uniform(0, 10),
                "succeeded": True,
                "attempt": 1,
                "created_at": at,
                "updated_at": at,
            }
        )
    return rows


def histograms(engine: Engine) -> dict[tuple[Any, ...], tuple[int, Any]]:
    key = (H.brand_id, H.metric, H.day, H.task_type, H.bucket)
    with engine.connect() as conn:
        rows = conn.execute(select(*key, H.count, H.total).where(H.count != 0)).all()
    return {tuple(row[:5]): (row[5], row[6]) for row in rows}


def test_revision_0003_counts_existing_records_as_the_application_does(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        upgrade("monitoring", engine, "0002")
        table = MetaData()
        table.reflect(engine, only=["metrics_records"])
        with engine.begin() as conn:
            conn.execute(insert(table.tables["metrics_records"]), records(300))
        upgrade("monitoring", engine, "0003")
        counted_by_the_revision = histograms(engine)

        with engine.begin() as conn:
            histogram.rebuild(conn)
        counted_by_the_application = histograms(engine)
    finally:
        engine.dispose()
    assert len(counted_by_the_revision) > 300
    assert counted_by_the_revision.keys() == counted_by_the_application.keys()
    for key, (count, total) in counted_by_the_application.items():
        assert counted_by_the_revision[key][0] == count, key
        assert abs(counted_by_the_revision[key][1] - total) <= 1e-9 * max(1.0, abs(total)), key
