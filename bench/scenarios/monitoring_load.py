"""Bulk-load N metrics records into monitoring's database (as N finished tasks would leave),
then build its daily roll-up and its histograms the way its migrations 0002 and 0003 do for
existing rows. One run in 997 is ten times slower than the rest (outliers for the anomalies).
Their tasks' ids follow the records already there (a quick bench run loads a topology that has
served other scenarios)."""

from __future__ import annotations

import importlib.util

from sqlalchemy import create_engine, text

from services.monitoring.metrics import histogram
from shared.config import REPO_ROOT

from .table_load import insert_select

# column -> value for record number g, after the records already there (table_load fills what a
# later schema requires)
RECORD_ROWS = {
    "brand_id": "CASE WHEN g % 10 < 8 THEN 9 ELSE 10 + g % 50 END",
    "base_task": "existing.id + g",
    "task_id": "'task_' || lpad(to_hex(existing.id + g), 12, '0')",
    "task_type": "(ARRAY['seo.analysis','seo.export','ai.content','example.noop','example.sleep','report.daily'])[1 + g % 6]",
    "priority": "(ARRAY['low','normal','normal','high','critical'])[1 + g % 5]",
    "execution_time_ms": "CASE WHEN g % 997 = 0 THEN 90000 + g % 9000 ELSE g % 9000 END::float",
    "memory_usage_mb": "32 + g % 512",
    "cpu_usage_percent": "g % 100",
    "network_bytes_sent": "g % 100000",
    "network_bytes_received": "g % 200000",
    "disk_io_bytes": "g % 50000",
    "api_calls_count": "g % 40",
    "tokens_used": "g % 4000",
    "cost_usd": "(g % 100) / 1000.0",
    "error_count": "CASE WHEN g % 17 = 0 THEN 1 ELSE 0 END",
    "warning_count": "g % 3",
    "retry_count": "g % 4",
    "worker_name": "'worker-' || (g % 8)",
    "queue_wait_time_ms": "(g % 3000)::float",
    "performance_score": "5 + g % 5",
    "succeeded": "g % 17 <> 0",
    "attempt": "1",
    "created_at": "now() - ((g % 7776000) || ' seconds')::interval",
    "updated_at": "now() - ((g % 7776000) || ' seconds')::interval",
}
RECORDS_SOURCE = "FROM generate_series(1, :n) AS g, (SELECT coalesce(max(base_task), 0) AS id FROM metrics_records) AS existing"


def _rollup_sql() -> str:
    path = REPO_ROOT / "services/monitoring/migrations/versions/0002_daily_rollup_of_metrics.py"
    spec = importlib.util.spec_from_file_location("monitoring_rollup_0002", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    fields = module.SUMMED
    day = "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
    return (
        f"INSERT INTO metrics_daily (brand_id, day, task_type, priority, runs, failures, peak_memory_mb, {', '.join(fields)}) "
        f"SELECT brand_id, {day}, task_type, priority, count(*), sum(CASE WHEN succeeded THEN 0 ELSE 1 END), "
        f"max(memory_usage_mb), {', '.join(f'sum({f})' for f in fields)} "
        f"FROM metrics_records GROUP BY brand_id, {day}, task_type, priority"
    )


def load(database_url: str, rows: int) -> None:
    engine = create_engine(database_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        insert_select(conn, "metrics_records", RECORD_ROWS, RECORDS_SOURCE, {"n": rows})
        conn.execute(text("DELETE FROM metrics_daily"))
        conn.execute(text(_rollup_sql()))
        histogram.rebuild(conn)
        conn.execute(text("VACUUM ANALYZE metrics_records"))
        conn.execute(text("VACUUM ANALYZE metrics_daily"))
        conn.execute(text("VACUUM ANALYZE metrics_histogram"))
    engine.dispose()
