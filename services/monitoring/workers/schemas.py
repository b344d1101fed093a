"""Worker schemas (docs/api.md §2). `queue_name` is the comma list of the queues a worker consumes;
`queues` gives the same as a list."""

from __future__ import annotations

import marshmallow as ma

from shared.api import ReadSchema, Schema, Timestamp
from shared.listing import CommaList, FlexibleBoolean, ListArgs, Ordering, page_schema

from ..container import monitoring
from ..models import Worker
from .service import is_online

QUEUE = ma.fields.String(validate=ma.validate.Regexp(r"^[A-Za-z0-9_.-]{1,100}$"))


class WorkerWriteSchema(Schema):
    """A manual record (POST); PUT and PATCH take any subset."""

    worker_name = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=200))
    queues = ma.fields.List(QUEUE, validate=ma.validate.Length(max=50))
    concurrency = ma.fields.Integer(validate=ma.validate.Range(1, 10_000))
    cpu_percent = ma.fields.Float(validate=ma.validate.Range(0, 100))
    memory_percent = ma.fields.Float(validate=ma.validate.Range(0, 100))
    load_average = ma.fields.Float(validate=ma.validate.Range(0, 100_000))
    processed_tasks = ma.fields.Integer(validate=ma.validate.Range(0))
    failed_tasks = ma.fields.Integer(validate=ma.validate.Range(0))


class WorkerUpdateSchema(WorkerWriteSchema):
    """Any subset, but not the name: a worker is known by it (renaming one made persistence
    interrupt the jobs of the worker that really has that name)."""

    class Meta:
        exclude = ("worker_name",)

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, partial=True, **kwargs)  # type: ignore[arg-type]


class WorkerSchema(ReadSchema):
    id = ma.fields.Integer()
    worker_name = ma.fields.String()
    queue_name = ma.fields.Function(lambda w: ",".join(w.queues))
    queues = ma.fields.List(ma.fields.String())
    concurrency = ma.fields.Integer()
    is_online = ma.fields.Method("online")
    cpu_percent = ma.fields.Float()
    memory_percent = ma.fields.Float()
    active_tasks = ma.fields.Integer()
    processed_tasks = ma.fields.Integer()
    failed_tasks = ma.fields.Integer()
    load_average = ma.fields.Float()
    last_heartbeat = Timestamp(allow_none=True)
    uptime_hours = ma.fields.Method("uptime")
    success_rate = ma.fields.Method("successes")
    created_at = Timestamp()

    def online(self, worker: Worker) -> bool:
        return is_online(worker, monitoring().offline_seconds)

    def uptime(self, worker: Worker) -> float | None:
        if worker.started_at is None or worker.last_heartbeat is None or not self.online(worker):
            return None
        return round(max(0.0, (worker.last_heartbeat - worker.started_at).total_seconds()) / 3600, 2)

    def successes(self, worker: Worker) -> float | None:
        """Share of the worker's finished tasks that did not fail (processed counts both)."""
        processed, failed = worker.processed_tasks, worker.failed_tasks
        return round(100.0 * (processed - failed) / processed, 2) if processed else None


class CurrentTaskSchema(ReadSchema):
    task_id = ma.fields.String()
    task_type = ma.fields.String()
    started_at = ma.fields.String(allow_none=True)
    estimated_completion = ma.fields.String(allow_none=True)


class PerformanceWindowSchema(ReadSchema):
    tasks_completed = ma.fields.Integer()
    avg_execution_time_ms = ma.fields.Float()
    errors = ma.fields.Integer()


class WorkerDetailSchema(WorkerSchema):
    """The detail: the worker, plus (set by the resource) what concerns the caller's brand."""

    current_tasks = ma.fields.List(ma.fields.Nested(CurrentTaskSchema))
    recent_performance = ma.fields.Dict(
        keys=ma.fields.String(), values=ma.fields.Nested(PerformanceWindowSchema)
    )


WorkerPageSchema = page_schema(WorkerSchema, "WorkerPage")


class WorkerListArgs(ListArgs):
    range_filters = {
        "cpu_percent": ma.fields.Float,
        "memory_percent": ma.fields.Float,
        "active_tasks": ma.fields.Integer,
        "load_average": ma.fields.Float,
    }
    is_online = FlexibleBoolean()
    queue_name = CommaList()
    ordering = Ordering(
        [
            "worker_name",
            "last_heartbeat",
            "cpu_percent",
            "memory_percent",
            "active_tasks",
            "load_average",
            "created_at",
        ]
    )


class _QueueLoad(ReadSchema):
    workers = ma.fields.Integer()
    active_tasks = ma.fields.Integer()
    avg_load = ma.fields.Float()


class _FleetHealth(ReadSchema):
    overall_status = ma.fields.String(metadata={"description": "healthy, degraded or unavailable"})
    avg_cpu_percent = ma.fields.Float()
    avg_memory_percent = ma.fields.Float()
    total_active_tasks = ma.fields.Integer()
    avg_load_average = ma.fields.Float()


class WorkersOverviewSchema(ReadSchema):
    total_workers = ma.fields.Integer()
    online_workers = ma.fields.Integer()
    queues = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Nested(_QueueLoad))
    system_health = ma.fields.Nested(_FleetHealth)
