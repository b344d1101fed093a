"""For migrations: rebuild tables on SQLite with AUTOINCREMENT (shared.db.SQLITE_IDS), so that
an id is never handed out twice. PostgreSQL's BIGSERIAL never reuses one: nothing to do there.

The rows, indexes and constraints are copied by Alembic's batch mode; shared.migrations runs
migrations with SQLite's foreign keys off, so the rebuild does not fire ON DELETE actions."""

from __future__ import annotations

from alembic import op


def never_reuse_ids(*tables: str) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in tables:
        with op.batch_alter_table(table, recreate="always", table_kwargs={"sqlite_autoincrement": True}):
            pass
