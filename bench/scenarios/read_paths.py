"""3. Read paths at scale: core's list and cross-service filters (and monitoring's dashboard and
performance-by-type when the service exists) over N bulk-loaded rows in PostgreSQL, through
nginx: p50/p99 per query, sequential requests (latency, not throughput)."""

from __future__ import annotations

import time

import requests
from sqlalchemy import create_engine, text

from ..stats import percentile
from ..topology import Platform

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

LOAD_TASKS = """
INSERT INTO tasks (task_id, brand_id, brand_name, created_by_id, created_by_username, task_type, status, priority,
  priority_rank, queue_name, description, progress_percentage, context_data, retry_count, max_retries,
  timeout_minutes, created_at, updated_at, attempt, lost_deliveries, has_metrics, is_resumable, is_periodic,
  execution_time_ms, metrics)
SELECT 'task_' || lpad(to_hex(g), 12, '0'), CASE WHEN g % 10 < 8 THEN 9 ELSE 10 + g % 50 END, 'Bench', '1', 'bench',
  (ARRAY['seo.analysis','seo.export','ai.content','example.noop','example.sleep','report.daily'])[1 + g % 6],
  (ARRAY['completed','completed','completed','completed','failed','pending','running','cancelled','retrying','completed'])[1 + (g / 7) % 10],
  (ARRAY['low','normal','normal','high','critical'])[1 + g % 5], (ARRAY[0,1,1,2,3])[1 + g % 5],
  (ARRAY['low','normal','normal','high','critical'])[1 + g % 5], 'task number ' || g, g % 101, '{}'::jsonb, g % 4,
  3, 60, now() - (g || ' seconds')::interval, now() - (g || ' seconds')::interval, 1, 0, g % 3 = 0, g % 11 = 0,
  g % 13 = 0, CASE WHEN g % 3 = 0 THEN (g % 9000)::float END,
  CASE WHEN g % 3 = 0 THEN jsonb_build_object('execution_time_ms', g % 9000, 'memory_usage_mb', 64, 'cost_usd', 0.01) END
FROM generate_series(1, :n) AS g
"""


def load_core(database_url: str, rows: int) -> None:
    engine = create_engine(database_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(LOAD_TASKS), {"n": rows})
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
