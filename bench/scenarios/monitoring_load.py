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

RECORDS = """
INSERT INTO metrics_records (brand_id, base_task, task_id, task_type, priority, execution_time_ms, memory_usage_mb,
  cpu_usage_percent, network_bytes_sent, network_bytes_received, disk_io_bytes, api_calls_count, tokens_used, cost_usd,
  error_count, warning_count, retry_count, worker_name, queue_wait_time_ms, performance_score, succeeded, attempt,
  created_at, updated_at)
SELECT CASE WHEN g % 10 < 8 THEN 9 ELSE 10 + g % 50 END, existing.id + g, 'task_' || lpad(to_hex(existing.id + g), 12, '0'),
  (ARRAY['seo.analysis','seo.export','ai.content','example.noop','example.sleep','report.daily'])[1 + g % 6],
  (ARRAY['low','normal','normal','high','critical'])[1 + g % 5],
  CASE WHEN g % 997 = 0 THEN 90000 + g % 9000 ELSE g % 9000 END::float, 32 + g % 512, g % 100, g % 100000, g % 200000, g % 50000, g % 40, g % 4000, (g % 100) / 1000.0,
  CASE WHEN g % 17 = 0 THEN 1 ELSE 0 END, g % 3, g % 4, 'worker-' || (g % 8), (g % 3000)::float, 5 + g % 5,
  g % 17 <> 0, 1, now() - ((g % 7776000) || ' seconds')::interval, now() - ((g % 7776000) || ' seconds')::interval
FROM generate_series(1, :n) AS g, (SELECT coalesce(max(base_task), 0) AS id FROM metrics_records) AS existing
"""


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
        conn.execute(text(RECORDS), {"n": rows})
        conn.execute(text("DELETE FROM metrics_daily"))
        conn.execute(text(_rollup_sql()))
        histogram.rebuild(conn)
        conn.execute(text("VACUUM ANALYZE metrics_records"))
        conn.execute(text("VACUUM ANALYZE metrics_daily"))
        conn.execute(text("VACUUM ANALYZE metrics_histogram"))
    engine.dispose()
