"""The statements a consumer batch writes with: rows read at once, changed in memory, written at
once (a few statements per table whatever the batch's size, never an ORM load and flush per event).

Rows that were not there when the batch read its rows are inserted with ON CONFLICT DO NOTHING:
if one was inserted meanwhile by a concurrent transaction (another replica of the consumer), the
in-memory result did not start from it, so the batch raises ConcurrentChange and is applied again
event by event (shared/events/delivery_batches.py), each reading the rows afresh."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import Table, bindparam, update
from sqlalchemy.orm import Session

from shared.db import upsert

# PostgreSQL takes at most 65,535 parameters per statement and SQLite 32,766: a larger batch
# (TASKHUB_CONSUMER_BATCH above a few hundred) is written in several statements of this many.
MAX_PARAMETERS = 30_000


class ConcurrentChange(RuntimeError):
    """A row this batch believed new was written by a concurrent transaction."""


def chunks(rows: Sequence[Mapping[str, Any]]) -> Iterator[Sequence[Mapping[str, Any]]]:
    """`rows` in slices small enough for one statement's parameters."""
    if not rows:
        return
    size = max(1, MAX_PARAMETERS // max(1, len(rows[0])))
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def insert_new(session: Session, table: Table, rows: Sequence[Mapping[str, Any]], key: str) -> None:
    """Insert rows this batch found absent (multi-row VALUES); ConcurrentChange if any is there now."""
    for part in chunks(rows):
        statement = upsert(session.get_bind(), table).values(list(part))
        inserted = session.execute(
            statement.on_conflict_do_nothing(index_elements=[key]).returning(table.c[key])
        ).scalars()
        if len(set(inserted)) != len(part):
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
