"""What scheduling learns from core's events: the tasks it may use as templates (`base_task`),
which task each run created (task.created's `origin.idempotency_key`), and how each run ended
(started, completed, failed, cancelled), which feeds last_run_status, the overlap policy, stats
and performance-analysis. Handlers never move a run backwards."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from shared.events.envelope import Envelope, parse_iso
from shared.unit_of_work import UnitOfWork

from .models import CRON_JOB, CoreTask, CronJob, PeriodicTask, ScheduleRun

FINAL = ("success", "failed", "cancelled")
TEMPLATE_FIELDS = ("task_type", "priority", "description", "context_data", "max_retries", "timeout_minutes")


def on_task_created(uow: UnitOfWork, env: Envelope) -> None:
    data, brand_id = env.data, env.brand_id
    if brand_id is None or data.get("id") is None:
        return
    if uow.session.get(CoreTask, int(data["id"])) is None:
        uow.session.add(
            CoreTask(
                id=int(data["id"]),
                brand_id=brand_id,
                task_id=str(data.get("task_id", "")),
                **{k: data.get(k) for k in TEMPLATE_FIELDS},
            )
        )
    key = (data.get("origin") or {}).get("idempotency_key")
    if key:
        run = uow.session.scalars(
            select(ScheduleRun).where(ScheduleRun.idempotency_key == key, ScheduleRun.brand_id == brand_id)
        ).first()
        if run is not None and run.task_pk is None:
            run.task_pk, run.task_ref = int(data["id"]), data.get("task_id")


def on_task_updated(uow: UnitOfWork, env: Envelope) -> None:
    task = _template(uow, env)
    if task is not None:
        for field, value in (env.data.get("changed") or {}).items():
            if field in TEMPLATE_FIELDS and field != "task_type":
                setattr(task, field, value)


def on_task_deleted(uow: UnitOfWork, env: Envelope) -> None:
    task = _template(uow, env)
    if task is not None:
        uow.session.delete(task)


def _template(uow: UnitOfWork, env: Envelope) -> CoreTask | None:
    raw = env.data.get("id")
    task = uow.session.get(CoreTask, int(raw)) if raw is not None else None
    return task if task is not None and task.brand_id == env.brand_id else None


def _runs_of(uow: UnitOfWork, env: Envelope) -> list[ScheduleRun]:
    raw = env.data.get("id")
    if raw is None or env.brand_id is None:
        return []
    return list(
        uow.session.scalars(
            select(ScheduleRun)
            .where(ScheduleRun.task_pk == int(raw), ScheduleRun.brand_id == env.brand_id)
            .with_for_update()
        )
    )


def _moment(env: Envelope, key: str) -> Any:
    return parse_iso(env.data.get(key)) or parse_iso(env.occurred_at)


def on_task_started(uow: UnitOfWork, env: Envelope) -> None:
    for run in _runs_of(uow, env):
        if run.status == "pending":
            run.status = "running"
        if run.started_at is None:
            run.started_at = _moment(env, "started_at")


def on_task_retried(uow: UnitOfWork, env: Envelope) -> None:
    """A manual retry of a failed run: it is running again (its outcome will come)."""
    for run in _runs_of(uow, env):
        if run.status in ("failed", "cancelled"):
            _finish(uow, run, "running", None, undo=True)


def _ender(status: str):  # type: ignore[no-untyped-def]
    def handle(uow: UnitOfWork, env: Envelope) -> None:
        if status == "failed" and env.data.get("will_retry"):
            return  # an automatic retry follows; the run is not over
        for run in _runs_of(uow, env):
            if run.status not in FINAL:
                _finish(uow, run, status, _moment(env, "completed_at"))

    return handle


def _finish(uow: UnitOfWork, run: ScheduleRun, status: str, at: Any, undo: bool = False) -> None:
    previous = run.status
    run.status, run.finished_at = status, at
    if run.cancel_requested_at is not None and status in FINAL:
        run.cancel_requested_at = None
    model = CronJob if run.schedule_kind == CRON_JOB else PeriodicTask
    schedule = uow.session.get(model, run.schedule_id, with_for_update=True)
    if schedule is None:
        return
    if schedule.last_run_at is None or run.fired_at >= schedule.last_run_at:
        schedule.last_run_status = {"success": "success", "running": "running"}.get(status, "failed")
    if isinstance(schedule, CronJob):
        if previous in FINAL and undo:
            field = "successful_executions" if previous == "success" else "failed_executions"
            setattr(schedule, field, max(0, getattr(schedule, field) - 1))
        elif status == "success":
            schedule.successful_executions += 1
        elif status in FINAL:
            schedule.failed_executions += 1


def read_model_handlers() -> dict[str, Any]:
    return {
        "task.created": on_task_created,
        "task.updated": on_task_updated,
        "task.deleted": on_task_deleted,
        "task.started": on_task_started,
        "task.retried": on_task_retried,
        "task.completed": _ender("success"),
        "task.failed": _ender("failed"),
        "task.cancelled": _ender("cancelled"),
    }
