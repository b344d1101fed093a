"""The events of a stream: read the brand's tasks changed after the position (less an overlap,
so that a transaction that committed late with an earlier `updated_at` is not missed), send each
once per change, move the position, sleep until woken. Delivery is at least once: an event may
come again after a reconnect, and a client keeps the newest state of each task."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, or_, select
from sqlalchemy.orm import Session, sessionmaker

from shared.task_states import FINAL

from ..models import Task
from ..tasks.queries import TASKS
from ..tasks.schemas import TaskSchema
from .changes import TaskChanges
from .positions import Position

BATCH = 500  # rows per query
READ_LIMIT = 2000  # changes sent per read; a larger backlog goes out over the next reads


@dataclass(frozen=True)
class FeedSettings:
    keepalive_seconds: float = 15.0
    overlap_seconds: float = 2.0
    min_read_interval_seconds: float = 0.1  # a burst of commits becomes one read


def sse(event: str | None, data: Any = None, event_id: str | None = None) -> str:
    lines = []
    if event_id:
        lines.append(f"id: {event_id}")
    if event:
        lines.append(f"event: {event}")
    lines.append("data: " + json.dumps(data, separators=(",", ":"), default=str))
    return "\n".join(lines) + "\n\n"


class Feed:
    """One stream's reading loop over `query` (the brand's tasks, or one of them)."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        changes: TaskChanges,
        query: Select[Any],
        position: Position | None,
        settings: FeedSettings,
        until_final: bool = False,
    ) -> None:
        self.session_factory, self.changes, self.query = session_factory, changes, query
        self.position, self.settings, self.until_final = position, settings, until_final
        self.sent: dict[int, datetime] = {}  # task pk -> updated_at sent, within the overlap window
        self.schema = TaskSchema()

    def head(self) -> Position | None:
        """The newest change there is now (None: nothing matches)."""
        with self.session_factory() as session:
            newest = session.scalars(
                self.query.order_by(Task.updated_at.desc(), Task.id.desc()).limit(1)
            ).first()
            return Position.of(newest) if newest is not None else None

    def start_at(self, head: Position) -> None:
        """A stream that resumes nothing starts at the present (`head`): what is visible now is
        not a change to send, but a transaction committing later with an earlier time still is."""
        self.position = head
        self.read()  # marks the overlap window as sent; nothing is yielded from it

    def read(self) -> tuple[list[tuple[Position, dict[str, Any]]], bool]:
        """Changes not sent yet, oldest first (at most READ_LIMIT; the rest at the next read), and
        whether the stream's task is final. The overlap window is walked page by page, so that a
        window fuller than a page of changes already sent never hides the newer ones."""
        stmt = self.query
        if self.position is not None:
            since = self.position.updated_at - timedelta(seconds=self.settings.overlap_seconds)
            stmt = stmt.where(Task.updated_at > since)
        out: list[tuple[Position, dict[str, Any]]] = []
        final = False
        after: Position | None = None
        with self.session_factory() as session:
            while len(out) < READ_LIMIT:
                page = stmt
                if after is not None:
                    page = page.where(
                        or_(
                            Task.updated_at > after.updated_at,
                            and_(Task.updated_at == after.updated_at, Task.id > after.task_pk),
                        )
                    )
                tasks = session.scalars(page.order_by(Task.updated_at, Task.id).limit(BATCH)).all()
                for task in tasks:
                    at = Position.of(task)
                    final = task.status in FINAL
                    if self.sent.get(task.id) == at.updated_at:
                        continue  # this change was sent already (the overlap re-reads it)
                    self.sent[task.id] = at.updated_at
                    out.append((at, self.schema.dump(task)))
                if len(tasks) < BATCH:
                    break
                after = Position.of(tasks[-1])
            if self.until_final and not out:
                # nothing new: is the one task final (or deleted) already?
                current = session.scalars(self.query).first()
                final = current is None or current.status in FINAL
        if out:
            newest = max(at for at, _ in out)
            if self.position is None or newest > self.position:
                self.position = newest
            self._forget_old()
        return out, final

    def _forget_old(self) -> None:
        if self.position is None:
            return
        horizon = self.position.updated_at - timedelta(seconds=self.settings.overlap_seconds)
        self.sent = {pk: at for pk, at in self.sent.items() if at > horizon}

    def events(self, clock: Callable[[], float] = time.monotonic) -> Iterator[str]:
        yield "retry: 2000\n\n"
        seen = self.changes.generation
        last_write = clock()
        while True:
            changes, final = self.read()
            for at, task in changes:
                yield sse("task", task, at.encode())
            if changes:
                last_write = clock()
            if self.until_final and final:
                return
            if len(changes) >= READ_LIMIT:
                continue  # a backlog: read on at once
            idle = clock() - last_write
            if idle >= self.settings.keepalive_seconds:
                yield ": keep-alive\n\n"
                last_write = clock()
                idle = 0.0
            seen = self.changes.wait_for_change(seen, self.settings.keepalive_seconds - idle)
            time.sleep(self.settings.min_read_interval_seconds)


def brand_head(session_factory: sessionmaker[Session], brand_id: int) -> Position:
    """The brand's newest change, or now when it has none: every later read is then bounded by
    the (brand_id, updated_at) index, whatever the stream's filters."""
    with session_factory() as session:
        newest = session.scalars(
            select(Task)
            .where(Task.brand_id == brand_id)
            .order_by(Task.updated_at.desc(), Task.id.desc())
            .limit(1)
        ).first()
    return Position.of(newest) if newest is not None else Position(datetime.now(UTC), 0)


def brand_query(brand_id: int, filters: dict[str, Any]) -> Select[Any]:
    stmt = select(Task).where(Task.brand_id == brand_id)
    for name in ("status", "task_type", "priority"):
        if filters.get(name):
            stmt = stmt.where(TASKS.filters[name](filters[name]))
    return stmt


def task_query(brand_id: int, task_pk: int) -> Select[Any]:
    return select(Task).where(Task.brand_id == brand_id, Task.id == task_pk)
