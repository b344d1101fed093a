"""Task request and response schemas (docs/api.md §1)."""

from __future__ import annotations

from typing import Any

import marshmallow as ma

from shared.api import ReadSchema, RefusesReadOnly, Schema, Timestamp, brand_of, creator_of
from shared.listing import CommaList, FlexibleBoolean, ListArgs, Ordering, page_schema
from shared.task_states import PENDING, PRIORITIES, STATUSES, TASK_TYPE_PATTERN

READ_ONLY_FIELDS = (
    "id", "task_id", "status", "progress_percentage", "brand", "created_by", "created_at",
    "updated_at", "started_at", "completed_at", "result_data", "error_message", "retry_count",
    "worker_name", "has_metrics", "metrics", "is_resumable", "is_periodic", "queue_name",
)  # fmt: skip


class _RejectReadOnly(RefusesReadOnly):
    read_only_fields = READ_ONLY_FIELDS


class TaskCreateSchema(_RejectReadOnly):
    task_type = ma.fields.String(required=True, validate=ma.validate.Regexp(TASK_TYPE_PATTERN))
    priority = ma.fields.String(validate=ma.validate.OneOf(PRIORITIES))
    description = ma.fields.String(load_default="", validate=ma.validate.Length(max=5000))
    context_data = ma.fields.Dict(keys=ma.fields.String(), load_default=dict)
    scheduled_for = ma.fields.AwareDateTime(allow_none=True)
    max_retries = ma.fields.Integer(load_default=None, validate=ma.validate.Range(0, 20))
    timeout_minutes = ma.fields.Integer(load_default=None, validate=ma.validate.Range(1, 10080))


class TaskBulkElementSchema(TaskCreateSchema):
    idempotency_key = ma.fields.String(validate=ma.validate.Length(min=1, max=255))


class TaskBulkCreateSchema(Schema):
    tasks = ma.fields.List(
        ma.fields.Nested(TaskBulkElementSchema),
        required=True,
        validate=ma.validate.Length(min=1, max=1000, error="Between 1 and 1,000 tasks per call."),
    )


class TaskUpdateSchema(_RejectReadOnly):
    """PUT and PATCH both take any subset of the writable fields."""

    task_type = ma.fields.String(validate=ma.validate.Regexp(TASK_TYPE_PATTERN))
    priority = ma.fields.String(validate=ma.validate.OneOf(PRIORITIES))
    description = ma.fields.String(validate=ma.validate.Length(max=5000))
    context_data = ma.fields.Dict(keys=ma.fields.String())
    scheduled_for = ma.fields.AwareDateTime(allow_none=True)
    max_retries = ma.fields.Integer(validate=ma.validate.Range(0, 20))
    timeout_minutes = ma.fields.Integer(validate=ma.validate.Range(1, 10080))


class TaskMetricsSummarySchema(ReadSchema):
    execution_time_ms = ma.fields.Float(allow_none=True)
    memory_usage_mb = ma.fields.Float(allow_none=True)
    cost_usd = ma.fields.Float(allow_none=True)


class TaskSchema(ReadSchema):
    id = ma.fields.Integer()
    task_id = ma.fields.String()
    task_type = ma.fields.String()
    status = ma.fields.String()
    priority = ma.fields.String()
    queue_name = ma.fields.String()
    description = ma.fields.String()
    progress_percentage = ma.fields.Integer()
    current_step = ma.fields.String(allow_none=True)
    brand = ma.fields.Function(brand_of)
    created_by = ma.fields.Function(creator_of)
    created_at = Timestamp()
    updated_at = Timestamp()
    scheduled_for = Timestamp(allow_none=True)
    started_at = Timestamp(allow_none=True)
    completed_at = Timestamp(allow_none=True)
    context_data = ma.fields.Dict()
    result_data = ma.fields.Dict(allow_none=True)
    error_message = ma.fields.String(allow_none=True)
    retry_count = ma.fields.Integer()
    max_retries = ma.fields.Integer()
    timeout_minutes = ma.fields.Integer()
    worker_name = ma.fields.String(allow_none=True)
    has_metrics = ma.fields.Boolean()
    metrics = ma.fields.Nested(TaskMetricsSummarySchema, allow_none=True)
    is_resumable = ma.fields.Boolean()
    is_periodic = ma.fields.Boolean()


class StatusChangeSchema(ReadSchema):
    from_status = ma.fields.String(allow_none=True)
    to_status = ma.fields.String()
    reason = ma.fields.String()
    attempt = ma.fields.Integer()
    at = Timestamp()


HISTORY_SHOWN = 50


class TaskDetailSchema(TaskSchema):
    """`show_traceback`: whether this reader sees error_traceback, decided by the HTTP layer
    (which knows the reader); hidden unless told."""

    status_history = ma.fields.Method("newest_history")
    error_traceback = ma.fields.Method("traceback_if_shown")

    def __init__(self, *, show_traceback: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.show_traceback = show_traceback

    def newest_history(self, task: object) -> list:
        """The 50 newest status changes; a task's creation is not stored as a row (one insert
        less per task): it is told from the task's own creation time."""
        changes = StatusChangeSchema(many=True).dump(getattr(task, "history", [])[:HISTORY_SHOWN])
        if len(changes) < HISTORY_SHOWN:
            created = {"from_status": None, "to_status": PENDING, "reason": "created", "attempt": 0}
            changes.append(StatusChangeSchema().dump({**created, "at": getattr(task, "created_at", None)}))
        return changes

    def traceback_if_shown(self, task: object) -> str | None:
        return getattr(task, "error_traceback", None) if self.show_traceback else None


TaskPageSchema = page_schema(TaskSchema, "TaskPage")


class TaskBulkResultSchema(ReadSchema):
    count = ma.fields.Integer()
    results = ma.fields.List(ma.fields.Nested(TaskSchema))


class TaskListArgs(ListArgs):
    range_filters = {
        "execution_time": lambda: ma.fields.Float(),
        "retry_count": lambda: ma.fields.Integer(),
        "progress_percentage": lambda: ma.fields.Integer(),
    }
    status = CommaList(STATUSES + ("active",))
    priority = CommaList(PRIORITIES)
    task_type = CommaList()
    task_type__startswith = ma.fields.String(validate=ma.validate.Length(min=1, max=100))
    queue_name = CommaList()
    has_metrics = FlexibleBoolean()
    is_resumable = FlexibleBoolean()
    is_periodic = FlexibleBoolean()
    ordering = Ordering(["created_at", "updated_at", "priority", "status", "progress_percentage"])


class RetryBodySchema(Schema):
    reset_progress = ma.fields.Boolean(load_default=False)
    clear_errors = ma.fields.Boolean(load_default=False)
    new_priority = ma.fields.String(validate=ma.validate.OneOf(PRIORITIES), allow_none=True)


class RetryResultSchema(ReadSchema):
    message = ma.fields.String()
    task_id = ma.fields.String()
    new_status = ma.fields.String()
    retry_count = ma.fields.Integer()
    max_retries = ma.fields.Integer()
    estimated_start = ma.fields.String(allow_none=True)


class CancelResultSchema(ReadSchema):
    message = ma.fields.String()
    task_id = ma.fields.String()
    previous_status = ma.fields.String()
    cancelled_at = ma.fields.String()


# ---- responses of the statistics views (documentation: the views build these bodies)


class _QueueFigures(ReadSchema):
    pending = ma.fields.Integer()
    running = ma.fields.Integer()
    total_today = ma.fields.Integer()
    broker_ready = ma.fields.Integer(allow_none=True, metadata={"description": "live broker figure"})
    broker_unacked = ma.fields.Integer(allow_none=True)
    consumers = ma.fields.Integer(allow_none=True)
    workers = ma.fields.Integer()


class QueueStatsSchema(ReadSchema):
    total_tasks = ma.fields.Integer()
    queues = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Nested(_QueueFigures))
    status_distribution = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Integer())
    avg_processing_time_minutes = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Float())


class _TypeFigures(ReadSchema):
    total = ma.fields.Integer()
    completed = ma.fields.Integer()
    failed = ma.fields.Integer()
    avg_duration_minutes = ma.fields.Float()
    success_rate = ma.fields.Float(allow_none=True)


class TypeStatsSchema(ReadSchema):
    task_types = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Nested(_TypeFigures))


class _LiveType(ReadSchema):
    task_type = ma.fields.String()
    queue = ma.fields.String()
    priority = ma.fields.String()
    timeout_minutes = ma.fields.Integer(allow_none=True)
    max_retries = ma.fields.Integer(allow_none=True)
    persistent = ma.fields.Boolean()
    workers = ma.fields.Integer(metadata={"description": "live workers serving the type"})


class TaskTypesSchema(ReadSchema):
    count = ma.fields.Integer()
    task_types = ma.fields.List(ma.fields.Nested(_LiveType))
    strict_mode = ma.fields.Boolean()
