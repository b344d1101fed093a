"""What PostgreSQL and the platform's own processes counted per database:

- transactions (commits + rollbacks) and rows written, from `pg_stat_database`, and updates with
  how many were HOT, from each database's `pg_stat_user_tables`: the server's own figures,
  whatever client sent the work;
- SQL statements, from the `taskhub_db_statements_total{database}` counter every process keeps
  (shared/db.py counts each statement SQLAlchemy hands to the driver: an `executemany` is one)
  in its Prometheus multiprocess files, read per process from the files' pids.
  PostgreSQL cannot count statements itself without `pg_stat_statements`, which needs a restart.

PostgreSQL 15 publishes a backend's figures at most once a second while it works, and within
10 s once it is idle: take the last reading at least that long after the work ended."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import create_engine, text

STATS_DELAY_S = 11.0
STATEMENTS = "taskhub_db_statements_total"

DATABASE_COUNTERS = ("xact_commit", "xact_rollback", "tup_inserted", "tup_updated", "tup_deleted")
TABLE_COUNTERS = ("n_tup_upd", "n_tup_hot_upd")

Counts = dict[str, int]


def server_counts(admin_url: str, database_urls: Mapping[str, str]) -> dict[str, Counts]:
    """Per database (by the name given in `database_urls`): its pg_stat_database counters and the
    sums of its tables' update counters. Reading the tables costs one transaction in each database."""
    names = {url.rsplit("/", 1)[1]: name for name, url in database_urls.items()}
    out: dict[str, Counts] = {}
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        rows = conn.execute(
            text(
                f"SELECT datname, {', '.join(DATABASE_COUNTERS)} FROM pg_stat_database WHERE datname = ANY(:names)"
            ),
            {"names": list(names)},
        ).all()
    admin.dispose()
    for row in rows:
        out[names[row[0]]] = dict(zip(DATABASE_COUNTERS, (int(v) for v in row[1:]), strict=True))
    for name, url in database_urls.items():
        engine = create_engine(url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            sums = conn.execute(
                text(
                    f"SELECT {', '.join(f'coalesce(sum({c}), 0)' for c in TABLE_COUNTERS)} FROM pg_stat_user_tables"
                )
            ).one()
        engine.dispose()
        out.setdefault(name, {}).update(zip(TABLE_COUNTERS, (int(v) for v in sums), strict=True))
    return out


def statement_counts(metrics_dirs: Iterable[Path], owners: Mapping[int, str]) -> dict[tuple[str, str], float]:
    """(process name, database) -> statements so far, from the Prometheus multiprocess files of
    `metrics_dirs` (a file per process: counter_<pid>.db); a pid not in `owners` is 'other'."""
    out: dict[tuple[str, str], float] = {}
    for folder in metrics_dirs:
        for path in sorted(folder.glob("counter_*.db")):
            pid = int(path.stem.rsplit("_", 1)[1])
            for metric in MultiProcessCollector.merge([str(path)], accumulate=True):
                for sample in metric.samples:
                    if sample.name == STATEMENTS:
                        key = (owners.get(pid, "other"), sample.labels.get("database", ""))
                        out[key] = out.get(key, 0.0) + sample.value
    return out
