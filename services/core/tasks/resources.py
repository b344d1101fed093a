"""HTTP layer of /tasks/: parse, call the service layer, serialize. No rules here."""

from __future__ import annotations

from typing import Any

import msgspec
from flask import Response, request
from flask.views import MethodView
from sqlalchemy import select

from shared.api import Blueprint
from shared.auth import current_principal, machine_assertion, machine_target
from shared.crud import in_session, in_transaction
from shared.errors import ApiError
from shared.events import catalog
from shared.listing import paginate
from shared.machine_identity import SCHEDULE_RUN, SCHEDULING

from ..container import core
from ..models import Task
from . import queries, quota, service
from .schemas import (
    CancelResultSchema,
    QueueStatsSchema,
    RetryBodySchema,
    RetryResultSchema,
    TaskBulkCreateSchema,
    TaskBulkResultSchema,
    TaskCreateSchema,
    TaskDetailSchema,
    TaskListArgs,
    TaskPageSchema,
    TaskSchema,
    TaskTypesSchema,
    TaskUpdateSchema,
    TypeStatsSchema,
)

blp = Blueprint("tasks", __name__, description="Tasks: create, follow, retry, cancel.")


@blp.route("/")
class Tasks(MethodView):
    @blp.arguments(TaskListArgs, location="query")
    @blp.response(200, TaskPageSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """List tasks"""
        return in_session(core(), paginate, queries.task_list(current_principal().brand_id, args), args)

    @blp.error(429, "The brand's quota of unfinished tasks is reached (RATE_LIMITED, Retry-After).")
    @blp.arguments(TaskCreateSchema)
    @blp.response(201, TaskSchema)
    @blp.alt_response(200, schema=TaskSchema, description="An Idempotency-Key repeat: the first task.")
    def post(self, fields: dict[str, Any]) -> Any:
        """Create a task"""
        key = request.headers.get("Idempotency-Key") or None
        origin = _schedule_origin(key)
        new = service.NewTask(
            fields,
            idempotency_key=key,
            periodic_task_id=(origin["periodic_task_id"] or origin["cron_job_id"] or 0) if origin else None,
            origin=origin,
        )
        [(view, created)] = _create([new], key)
        return _as_json(_api_view(view), 201 if created else 200)


@blp.route("/bulk/")
class TasksInBulk(MethodView):
    @blp.arguments(TaskBulkCreateSchema)
    @blp.response(201, TaskBulkResultSchema)
    def post(self, body: dict[str, Any]) -> Any:
        """Create up to 1,000 tasks in one transaction (all or nothing)"""
        news = [
            service.NewTask(
                {k: v for k, v in element.items() if k != "idempotency_key"}, element.get("idempotency_key")
            )
            for element in body["tasks"]
        ]
        results = _create(news, None)
        return _as_json({"count": len(results), "results": [_api_view(view) for view, _ in results]}, 201)


def _create(news: list[service.NewTask], idempotency_key: str | None) -> list[tuple[Any, bool]]:
    """The caller's new tasks, all or none, within the brand's quota of active tasks (a bulk
    create counts every task it creates)."""
    principal, container = current_principal(), core()
    with container.uow() as uow:
        quota.check_active_tasks(
            uow.session, container.ctx.settings, principal.brand_id, idempotency_key, len(news)
        )
        results = service.create_tasks(
            uow, service.Creator.of(principal), news, container.registry, strict_types=container.strict_types
        )
        uow.commit()
    return results


# what task.created says beyond the API's view of a task
_EVENT_ONLY = ("persistent", "periodic_task_id", "origin")


def _api_view(view: Any) -> dict[str, Any]:
    data = catalog.to_data(view)
    for key in _EVENT_ONLY:
        data.pop(key, None)
    return data


def _as_json(body: Any, status: int) -> Response:
    """The body is built already (task.created's data): encode it once, without a second dump."""
    return Response(msgspec.json.encode(body), status=status, mimetype="application/json")


def _schedule_origin(key: str | None) -> dict[str, Any] | None:
    """scheduling's run-now call (docs/scheduling.md): `X-Schedule-Origin` marks the task as a
    schedule's run, exactly as the schedule.fired event for the same Idempotency-Key would. The
    header is a `schedule-run` grant signed by scheduling for this brand and this key: a client
    cannot write it (docs/security.md)."""
    raw = request.headers.get("X-Schedule-Origin")
    if not raw or not key:
        return None
    grant = machine_assertion(raw, SCHEDULING, SCHEDULE_RUN)
    if grant is None or grant.claims.get("key") != key:
        raise ApiError(
            400,
            "VALIDATION_ERROR",
            "X-Schedule-Origin is internal to the platform.",
            field_errors={"X-Schedule-Origin": ["Not a valid schedule origin for this request."]},
        )
    given = grant.claims.get("origin")
    if not isinstance(given, dict):
        return None
    origin = {k: given.get(k) for k in ("periodic_task_id", "cron_job_id", "planned_time")}
    if not all(isinstance(origin[k], int | None) for k in ("periodic_task_id", "cron_job_id")):
        return None
    return {**origin, "idempotency_key": key}


# a task's error_traceback is shown to the admins of its own brand only (docs/decisions.md; the
# query already scoped the brand): the HTTP layer knows the reader, the schema is told
_DETAIL = TaskDetailSchema()
_DETAIL_FOR_ADMINS = TaskDetailSchema(show_traceback=True)


def _detail(task: Task) -> dict[str, Any]:
    schema = _DETAIL_FOR_ADMINS if current_principal().can("admin") else _DETAIL
    return schema.dump(task)


STATUS_REFUSES = (
    "The task is in a status that does not allow it (INVALID_STATUS_TRANSITION, with current_status)."
)


@blp.route("/<int:task_pk>/")
class TaskById(MethodView):
    @blp.answers(TaskDetailSchema)
    def get(self, task_pk: int) -> dict[str, Any]:
        """Get a task with its status history"""
        with core().session_factory() as session:
            return _detail(service.get_task(session, current_principal().brand_id, task_pk))

    @blp.error(409, STATUS_REFUSES)
    @blp.arguments(TaskUpdateSchema)
    @blp.answers(TaskDetailSchema)
    def put(self, fields: dict[str, Any], task_pk: int) -> dict[str, Any]:
        """Update a task's writable fields"""
        return _update(task_pk, fields)

    @blp.error(409, STATUS_REFUSES)
    @blp.arguments(TaskUpdateSchema)
    @blp.answers(TaskDetailSchema)
    def patch(self, fields: dict[str, Any], task_pk: int) -> dict[str, Any]:
        """Update some of a task's writable fields"""
        return _update(task_pk, fields)

    @blp.error(409, STATUS_REFUSES)
    @blp.response(204)
    def delete(self, task_pk: int) -> None:
        """Delete a task that is not running"""
        in_transaction(core(), service.delete_task, current_principal().brand_id, task_pk)


def _update(task_pk: int, fields: dict[str, Any]) -> dict[str, Any]:
    return _detail(in_transaction(core(), service.update_task, current_principal().brand_id, task_pk, fields))


@blp.route("/<int:task_pk>/retry/")
class TaskRetry(MethodView):
    @blp.error(
        409, "Not retryable now (INVALID_STATUS_TRANSITION, TASK_ALREADY_COMPLETED, MAX_RETRIES_EXCEEDED)."
    )
    @blp.arguments(RetryBodySchema, required=False)
    @blp.response(200, RetryResultSchema)
    def post(self, options: dict[str, Any], task_pk: int) -> dict[str, Any]:
        """Retry a failed or cancelled task"""
        return in_transaction(
            core(), service.retry_task, current_principal().brand_id, task_pk, options or {}
        )


@blp.route("/<int:task_pk>/cancel/")
class TaskCancel(MethodView):
    @blp.error(
        409, "Already finished (INVALID_STATUS_TRANSITION, TASK_ALREADY_COMPLETED, with allowed_statuses)."
    )
    @blp.response(200, CancelResultSchema)
    def post(self, task_pk: int) -> dict[str, Any]:
        """Cancel a task (a running one is told to stop)"""
        machine_target(task=task_pk)  # the scheduler's grant names the one task it may cancel
        with core().uow() as uow:
            if current_principal().machine is not None:
                _a_schedules_run(uow.session, task_pk)
            result = service.cancel_task(uow, current_principal().brand_id, task_pk)
            uow.commit()
            return result


def _a_schedules_run(session: Any, task_pk: int) -> None:
    """A scheduling grant cancels a schedule's run, never a task a user created."""
    is_run = session.scalar(
        select(Task.is_periodic).where(Task.id == task_pk, Task.brand_id == current_principal().brand_id)
    )
    if is_run is False:
        raise ApiError(403, "PERMISSION_DENIED", "This credential cancels schedules' runs only.")


@blp.route("/queue-stats/")
class QueueStats(MethodView):
    @blp.answers(QueueStatsSchema)
    def get(self) -> dict[str, Any]:
        """Queue figures: the brand's tasks per queue and the broker's live figures"""
        container = core()
        return in_session(container, queries.queue_stats, current_principal().brand_id, container.bus)


@blp.route("/type-stats/")
class TypeStats(MethodView):
    @blp.answers(TypeStatsSchema)
    def get(self) -> dict[str, Any]:
        """Per task type: totals, outcomes, average duration, success rate"""
        return in_session(core(), queries.type_stats, current_principal().brand_id)


@blp.route("/types/")
class TaskTypes(MethodView):
    @blp.answers(TaskTypesSchema)
    def get(self) -> dict[str, Any]:
        """The task types the running workers can execute, with their defaults"""
        types = core().registry.live_types(max_age=0)
        return {
            "count": len(types),
            "task_types": [
                {
                    "task_type": name,
                    "queue": spec.get("queue", spec.get("priority", "normal")),
                    "priority": spec.get("priority", "normal"),
                    "timeout_minutes": spec.get("timeout_minutes"),
                    "max_retries": spec.get("max_retries"),
                    "persistent": bool(spec.get("persistent")),
                    "workers": spec["workers"],
                }
                for name, spec in sorted(types.items())
            ],
            "strict_mode": core().strict_types,
        }
