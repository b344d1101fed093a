"""The statements a consumer batch writes with: rows read at once, changed in memory, written at
once (a few statements per table whatever the batch's size, never an ORM load and flush per event).

Rows that were not there when the batch read its rows are inserted with ON CONFLICT DO NOTHING:
if one was inserted meanwhile by a concurrent transaction (another replica of the consumer), the
in-memory result did not start from it, so the batch raises ConcurrentChange and is applied again
event by event (shared/events/delivery_batches.py), each reading the rows afresh."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Table, bindparam, update
from sqlalchemy.orm import Session

from shared.db import upsert


class ConcurrentChange(RuntimeError):
    """A row this batch believed new was written by a concurrent transaction."""


def insert_new(session: Session, table: Table, rows: Sequence[Mapping[str, Any]], key: str) -> None:
    """Insert rows this batch found absent; ConcurrentChange if any is there now."""
    if not rows:
        return
    # an executemany of one statement: SQLAlchemy compiles it once and sends multi-row VALUES
    # itself (insertmanyvalues); a `.values(rows)` statement was compiled again for every batch
    statement = upsert(session.get_bind(), table).on_conflict_do_nothing(index_elements=[key])
    inserted = session.execute(statement.returning(table.c[key]), list(rows)).scalars()
    if len(set(inserted)) != len(rows):
        raise ConcurrentChange(f"{table.name}: a row was inserted concurrently")


def update_rows(session: Session, table: Table, rows: Sequence[Mapping[str, Any]], key: str = "id") -> None:
    """Update rows (read and locked by this batch) by their key: one executemany of one statement."""
    if not rows:
        return
    columns = [name for name in rows[0] if name != key]
    statement = (
        update(table)
        .where(table.c[key] == bindparam("row_key"))
        .values({name: bindparam(f"new_{name}") for name in columns})
    )
    session.execute(
        statement,
        [{"row_key": row[key], **{f"new_{name}": row[name] for name in columns}} for row in rows],
    )
