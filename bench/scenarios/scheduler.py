"""4. Scheduler: N stored schedules, M of them due in the same minute, two scheduler replicas
(each its own process-like container and connection pool, on threads) over PostgreSQL: fire delay
(fired_at - planned slot) p50/p99, missed and doubled slots. Measured twice: with the default
lookahead (slots fire up to 10 s early, the task waits in core for its time) and without it."""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import create_engine, text

from shared.events.inprocess_bus import InProcessBus
from shared.migrations import upgrade

from ..stats import percentile
from ..topology import SECRET, drop_database, fresh_database
from .table_load import insert_select

DUE = "CASE WHEN g <= :due THEN :slot ELSE :far END"
# column -> value for schedule number g, the first `due` of them due at :slot
SCHEDULE_ROWS = {
    "brand_id": "9 + g % 20",
    "brand_name": "'Bench'",
    "created_by_id": "'1'",
    "created_by_username": "'bench'",
    "task_type": "'example.noop'",
    "timezone": "'UTC'",
    "is_active": "true",
    "next_planned_at": DUE,
    "next_run_at": DUE,
    "executions_count": "0",
    "missed_runs_count": "0",
    "misfire_policy": "'run_once'",
    "catchup_window_minutes": "60",
    "overlap_policy": "'allow'",
    "jitter_seconds": "0",
    "created_at": "now()",
    "updated_at": "now()",
    "description": "'bench'",
    "context_data": "'{}'::jsonb",
    "cron_expression": "CASE WHEN g <= :due THEN '* * * * *' ELSE '0 0 1 1 *' END",
    "schedule_config": "'{}'::jsonb",
}


def run(n: int, due: int, lookahead_seconds: float, lead_s: float = 25.0) -> dict[str, float]:
    """The slot is `lead_s` (plus the lookahead) ahead: time to load the schedules and start."""
    from services.scheduling.container import bootstrap
    from services.scheduling.scheduler import scheduler_loops
    from shared.background import start_loops
    from shared.config import load_settings

    database = f"taskhub_bench_scheduling{os.getpid()}"
    url = fresh_database(database)
    env = {
        "JWT_SECRET": SECRET,
        "SCHEDULING_DATABASE_URL": url,
        "TASKHUB_SCHEDULER_LOOKAHEAD_SECONDS": str(lookahead_seconds),
        "LOG_LEVEL": "WARNING",
    }
    replicas = [bootstrap(load_settings("scheduling", env), bus=InProcessBus()) for _ in range(2)]
    upgrade("scheduling", replicas[0].ctx.engine)
    now = datetime.now(UTC)
    slot = (now + timedelta(seconds=lead_s + lookahead_seconds)).replace(microsecond=0)
    engine = create_engine(url)
    with engine.begin() as conn:
        params = {"n": n, "due": due, "slot": slot, "far": slot + timedelta(days=365)}
        insert_select(conn, "periodic_tasks", SCHEDULE_ROWS, "FROM generate_series(1, :n) AS g", params)
        conn.execute(text("ANALYZE periodic_tasks"))
    stop = threading.Event()
    threads = [t for r in replicas for t in start_loops(scheduler_loops(r), stop)]
    deadline = time.monotonic() + lead_s + lookahead_seconds + 60
    try:
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                fired = conn.execute(
                    text("SELECT count(*) FROM schedule_runs WHERE planned_time = :s"), {"s": slot}
                ).scalar_one()
            if fired >= due:
                break
            time.sleep(0.5)
        time.sleep(2)  # let a doubled fire (if any) show up
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT schedule_id, fired_at FROM schedule_runs WHERE planned_time = :s"), {"s": slot}
        ).all()
    engine.dispose()
    for replica in replicas:
        replica.ctx.dispose()
    drop_database(database)
    delays = [(fired_at - slot).total_seconds() * 1000 for _, fired_at in rows]
    distinct = {schedule_id for schedule_id, _ in rows}
    return {
        "p50_ms": percentile(delays, 50),
        "p99_ms": percentile(delays, 99),
        "missed": due - len(distinct),
        "doubled": len(rows) - len(distinct),
    }
