"""What monitoring knows of core's tasks (`task_views`), copied from core's public task events:
core is the only writer of a task's status, and a view says what core's last event said, never
a status worked out here. It gives metrics records their `base_task` summary and their brand
check.

A consumer batch reads the views of its tasks at once (locked), applies its events to them in
memory in delivery order (the rules below), and writes the new and changed ones at once
(TaskViews). The rules make a late or repeated event harmless:
- an event of an older attempt than the view's changes nothing; one of a newer attempt means core
  started that attempt, so it applies even over a final status;
- a final status (completed, failed, cancelled) otherwise sticks until task.retried announces a
  newer retry (its `retry_count` is above the view's);
- task.deleted leaves a tombstone: nothing about the task applies any more;
- an event whose envelope brand differs from the task's is ignored (forged or misrouted).
An outcome may overtake task.created (a redelivery): the view is then made from the summary of
the task the outcome carries, and task.created fills in the rest without moving its status back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from shared import task_states as st
from shared.events.catalog import (
    TaskCancelled,
    TaskCompleted,
    TaskCreated,
    TaskOutcome,
    TaskRetried,
    TaskStarted,
    TaskUpdated,
)
from shared.events.envelope import Envelope, parse_iso

from .models import TaskView
from .set_based import insert_new, update_rows

DELETED = "deleted"  # a tombstone: nothing about the task applies any more
CLOSED = st.FINAL | {DELETED}


@dataclass
class View:
    """A row of task_views, changed in memory while a batch is applied."""

    id: int
    task_id: str
    brand_id: int
    task_type: str = ""
    status: str = st.PENDING
    priority: str = "normal"
    queue_name: str = "normal"
    worker_name: str | None = None
    attempt: int = 0
    retry_count: int = 0
    max_retries: int = 3
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def final(self) -> bool:
        return self.status in CLOSED

    def moves_to(self, attempt: int) -> bool:
        """Does an event of `attempt` speak for the task's current state? A newer attempt always
        does, the current one unless the task has reached a final status."""
        return attempt > self.attempt or (attempt == self.attempt and not self.final)


VIEWS = cast(Table, TaskView.__table__)


def _text(value: Any, limit: int) -> str:
    return str(value)[:limit]


# ------------------------------------------------------------------------------- the rules


def on_created(view: View, event: TaskCreated) -> None:
    view.task_id = _text(event.task_id, 40)
    view.task_type = _text(event.task_type, 100)
    view.priority = _text(event.priority, 10)
    view.queue_name = _text(event.queue_name or event.priority, 100)
    view.max_retries = event.max_retries
    view.retry_count = max(view.retry_count, event.retry_count)
    view.created_at = parse_iso(event.created_at) or view.created_at
    if view.attempt == 0 and not view.final:
        view.status = event.status


def on_updated(view: View, event: TaskUpdated) -> None:
    changed = event.changed
    if "priority" in changed:
        view.priority = _text(changed["priority"], 10)
    if "max_retries" in changed:
        view.max_retries = int(changed["max_retries"])
    status = changed.get("status")
    # core re-ran the task (worker lost, job resumed) or paused it
    if status in st.STATUSES and view.moves_to(int(changed.get("attempt") or 0)):
        view.status = str(status)
        view.attempt = int(changed.get("attempt") or 0)
        if status not in st.FINAL:
            view.completed_at = None


def on_started(view: View, event: TaskStarted) -> None:
    if not view.moves_to(event.attempt):
        return
    if event.attempt == view.attempt and view.status not in (st.PENDING, st.RETRYING):
        return  # this attempt already moved on (a started arriving after its outcome)
    view.attempt = event.attempt
    view.status = st.RUNNING
    view.worker_name = _text(event.worker_name, 200)
    view.started_at = parse_iso(event.started_at) or view.started_at


def on_outcome(view: View, event: TaskOutcome, env: Envelope) -> None:
    """task.completed / task.failed: the status core gave the task (task.failed's `will_retry` is
    core's decision), and the summary of the task for a view that has not seen task.created."""
    if not view.task_type:
        view.task_type = _text(event.task_type, 100)
        view.priority = _text(event.priority, 10)
        view.queue_name = view.priority
        view.max_retries = event.max_retries
        view.created_at = view.created_at or parse_iso(event.created_at)
    if not view.moves_to(event.attempt):
        return
    view.attempt = event.attempt
    view.worker_name = _text(event.worker_name, 200) if event.worker_name else view.worker_name
    view.retry_count = max(view.retry_count, event.retry_count)
    view.started_at = parse_iso(event.started_at) or view.started_at
    if isinstance(event, TaskCompleted):
        view.status = st.COMPLETED
    else:
        view.status = st.RETRYING if getattr(event, "will_retry", False) else st.FAILED
    ended = parse_iso(event.completed_at) or parse_iso(env.occurred_at)
    view.completed_at = ended if view.status in st.FINAL else None


def on_retried(view: View, event: TaskRetried) -> None:
    if event.retry_count <= view.retry_count:
        return  # a retry the view already knows of (a later event said so)
    view.retry_count = event.retry_count
    if view.status in (st.FAILED, st.CANCELLED):
        view.status = st.PENDING if event.reason == "manual" else st.RETRYING
        view.completed_at = None


def on_cancelled(view: View, event: TaskCancelled, env: Envelope) -> None:
    if event.attempt is not None and event.attempt < view.attempt:
        return
    if not view.final:
        view.status = st.CANCELLED
        view.completed_at = parse_iso(env.occurred_at)


def on_deleted(view: View) -> None:
    view.status = DELETED


# --------------------------------------------------------------------- a batch's views


class TaskViews:
    """The views of one batch's tasks: read at once (locked until the batch commits), changed in
    memory, written at once."""

    def __init__(self, session: Session, ids: Iterable[int]) -> None:
        wanted = sorted(set(ids))
        rows = (
            session.execute(
                select(VIEWS).where(VIEWS.c.id.in_(wanted)).order_by(VIEWS.c.id).with_for_update()
            ).all()
            if wanted
            else []
        )
        self.views: dict[int, View] = {row.id: View(**row._mapping) for row in rows}
        self.read: dict[int, dict[str, Any]] = {pk: asdict(view) for pk, view in self.views.items()}

    def existed(self, pk: int) -> bool:
        return pk in self.read

    def of(self, env: Envelope, pk: int, task_id: str, *, create: bool) -> View | None:
        """The event's task; None for another brand's task (forged or misrouted), an event
        without a brand, or (unless `create`) an unknown task."""
        if env.brand_id is None:
            return None
        view = self.views.get(pk)
        if view is not None:
            return view if view.brand_id == env.brand_id else None
        if not create:
            return None
        view = self.views[pk] = View(id=pk, task_id=_text(task_id, 40), brand_id=env.brand_id)
        return view

    def write(self, session: Session, now: datetime) -> None:
        new: list[dict[str, Any]] = []
        changed: list[dict[str, Any]] = []
        for pk, view in sorted(self.views.items()):
            before = self.read.get(pk)
            row = asdict(view)
            if row == before:
                continue
            row["updated_at"] = view.updated_at = now
            (changed if before is not None else new).append(row)
        insert_new(session, VIEWS, new, "id")
        update_rows(session, VIEWS, changed)
