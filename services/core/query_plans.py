"""The PostgreSQL plans of core's main list queries: `python -m services.core.query_plans`
prints them for the configured CORE_DATABASE_URL (docs/query-plans.md shows a run at scale).
The test suite checks that every filter and ordering of §1 can be served by an index."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.dialects import postgresql

from .tasks.queries import task_list

BRAND = 9
MAIN_QUERIES: dict[str, dict[str, Any]] = {
    "default list (newest first)": {},
    "status=pending,running": {"status": ["pending", "running"]},
    "status=active": {"status": ["active"]},
    "priority=high ordering=-priority": {"priority": ["high"], "ordering": [("priority", True)]},
    "task_type=seo.analysis": {"task_type": ["seo.analysis"]},
    "queue_name=critical": {"queue_name": ["critical"]},
    "has_metrics=true&execution_time__gte=2000": {"has_metrics": True, "execution_time__gte": 2000.0},
    "is_resumable=true": {"is_resumable": True},
    "is_periodic=true&status=active": {"is_periodic": True, "status": ["active"]},
    "retry_count__gte=2": {"retry_count__gte": 2},
    "ordering=-updated_at": {"ordering": [("updated_at", True)]},
    "ordering=progress_percentage": {"ordering": [("progress_percentage", False)]},
}


def explain(engine: Engine, args: dict[str, Any], *, seqscan: bool = True) -> str:
    stmt = task_list(BRAND, args).limit(25)
    sql = str(stmt.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
    with engine.connect() as conn:
        if not seqscan:
            conn.execute(text("SET enable_seqscan = off"))
        rows = conn.execute(text("EXPLAIN " + sql)).all()
    return "\n".join(row[0] for row in rows)


def main() -> None:
    from shared.config import load_settings
    from shared.db import make_engine

    engine = make_engine(load_settings("core").database_url)
    for name, args in MAIN_QUERIES.items():
        print(f"### {name}\n```\n{explain(engine, args)}\n```\n")


if __name__ == "__main__":
    main()
