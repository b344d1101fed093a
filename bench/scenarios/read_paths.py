"""3. Read paths at scale: core's list and cross-service filters (and monitoring's dashboard and
performance-by-type when the service exists) over N bulk-loaded rows in PostgreSQL, through
nginx: p50/p99 per query, sequential requests (latency, not throughput)."""

from __future__ import annotations

import time

import requests
from sqlalchemy import create_engine, text

from ..stats import percentile
from ..topology import Platform
from .table_load import insert_select

CORE_QUERIES = {
    "tasks default": "/tasks/",
    "tasks status=active": "/tasks/?status=active",
    "tasks priority ordering": "/tasks/?priority=high&ordering=-priority",
    "tasks has_metrics&execution_time__gte": "/tasks/?has_metrics=true&execution_time__gte=2000",
    "tasks is_resumable": "/tasks/?is_resumable=true",
    "tasks is_periodic&active": "/tasks/?is_periodic=true&status=active",
    "tasks search": "/tasks/?search=seo.export",
    "tasks page 3 of a type": "/tasks/?task_type=ai.content&page=3",
}
MONITORING_QUERIES = {
    "monitoring dashboard 30d": "/tasks/monitoring/metrics/dashboard/?days=30",
    "monitoring performance-by-type": "/tasks/monitoring/metrics/performance-by-type/?days=30",
    "monitoring anomalies 7d": "/tasks/monitoring/metrics/anomalies/?days=7",
    "monitoring anomalies 30d cost": "/tasks/monitoring/metrics/anomalies/?days=30&metric=cost_usd",
    "monitoring metrics list": "/tasks/monitoring/metrics/?execution_time_ms__gte=2000",
}

TYPES = "(ARRAY['seo.analysis','seo.export','ai.content','example.noop','example.sleep','report.daily'])[1 + g % 6]"
STATUSES = (
    "(ARRAY['completed','completed','completed','completed','failed','pending','running','cancelled',"
    "'retrying','completed'])[1 + (g / 7) % 10]"
)
PRIORITIES = "(ARRAY['low','normal','normal','high','critical'])[1 + g % 5]"
# column -> value for task number g (bench.scenarios.table_load fills what a later schema requires)
TASK_ROWS = {
    "task_id": "'task_' || lpad(to_hex(g), 12, '0')",
    "brand_id": "CASE WHEN g % 10 < 8 THEN 9 ELSE 10 + g % 50 END",
    "brand_name": "'Bench'",
    "created_by_id": "'1'",
    "created_by_username": "'bench'",
    "task_type": TYPES,
    "status": STATUSES,
    "priority": PRIORITIES,
    "priority_rank": "(ARRAY[0,1,1,2,3])[1 + g % 5]",
    "queue_name": PRIORITIES,
    "description": "'task number ' || g",
    "progress_percentage": "g % 101",
    "context_data": "'{}'::jsonb",
    "retry_count": "g % 4",
    "max_retries": "3",
    "timeout_minutes": "60",
    "created_at": "now() - (g || ' seconds')::interval",
    "updated_at": "now() - (g || ' seconds')::interval",
    "attempt": "1",
    "lost_deliveries": "0",
    "has_metrics": "g % 3 = 0",
    "is_resumable": "g % 11 = 0",
    "is_periodic": "g % 13 = 0",
    "execution_time_ms": "CASE WHEN g % 3 = 0 THEN (g % 9000)::float END",
    "metrics": (
        "CASE WHEN g % 3 = 0 THEN jsonb_build_object('execution_time_ms', g % 9000, 'memory_usage_mb', 64, "
        "'cost_usd', 0.01) END"
    ),
}


def load_core(database_url: str, rows: int) -> None:
    engine = create_engine(database_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        insert_select(conn, "tasks", TASK_ROWS, "FROM generate_series(1, :n) AS g", {"n": rows})
        conn.execute(text("VACUUM ANALYZE tasks"))
    engine.dispose()


def time_queries(p: Platform, queries: dict[str, str], repeats: int) -> dict[str, dict[str, float]]:
    session = requests.Session()
    headers = p.headers()
    out = {}
    for name, path in queries.items():
        latencies = []
        for i in range(repeats + 3):
            start = time.perf_counter()
            response = session.get(p.base_url + path, headers=headers, timeout=60)
            elapsed = (time.perf_counter() - start) * 1000
            if response.status_code != 200:
                raise RuntimeError(f"{path}: {response.status_code} {response.text[:200]}")
            if i >= 3:  # the first calls warm caches and connection pools
                latencies.append(elapsed)
        out[name] = {"p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99)}
    return out
