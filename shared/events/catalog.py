"""Every message on the bus, one class each: the events of docs/events.md, the attempt reports workers
send to core, and the work order core sends to workers. Producers build these classes, consumers
read them; the JSON Schemas in docs/events/ and docs/asyncapi.yaml are generated from them, and
the tests check published messages against them.

Who sends what (docs/events.md tells the story):
- core is the only writer of a task's status: workers report attempts to core (`attempt.*`, read
  by core alone), and core's transitions emit the public `task.*` events the other services and
  outside consumers follow;
- each public task event carries headers that let a consumer bind only to what it acts on
  (PERIODIC_HEADER, PERSISTENT_HEADER).
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

import msgspec

Json = dict[str, Any]

# Headers of core's task events, for filtered bindings: "1" when true, absent otherwise.
PERIODIC_HEADER = "periodic"
PERSISTENT_HEADER = "persistent"
# Header of a work order a worker handed back to its queue unstarted: how many deliveries it had had
# before, so that the deaths of workers that held it stay counted (a copy starts at 1 again).
EARLIER_DELIVERIES_HEADER = "earlier_deliveries"


class Event(msgspec.Struct, kw_only=True):
    """The `data` of an envelope. `event_type` is the routing key; `producer` who sends it."""

    event_type: ClassVar[str]
    producer: ClassVar[str]


S = TypeVar("S", bound=msgspec.Struct)  # an event, or a part of one (a metrics summary)


# ------------------------------------------------------------------------------------------ work


class WorkOrder(msgspec.Struct, kw_only=True):
    """Run attempt `attempt` of a task (work exchange, routing key = priority). Producer: core.
    A newer attempt number makes every older order for the task stale."""

    id: int
    task_id: str
    brand_id: int
    task_type: str
    priority: str
    context_data: Json
    attempt: int
    retry_count: int
    max_retries: int
    timeout_minutes: int
    dispatched_at: str | None = None
    created_at: str | None = None
    # a resumed or restarted persistent job: the job and the checkpoint to continue from
    resume: Json | None = None
    periodic: bool = False
    persistent: bool = False
    # the `attempt` grant for this attempt's persistence calls (docs/security.md): the worker
    # holds no key of its own
    credentials: str | None = None


# ------------------------------------------------------------------ worker -> core: attempt reports


class AttemptMetrics(msgspec.Struct, kw_only=True):
    """What an attempt used, measured by the worker and its child process."""

    execution_time_ms: float | None = None
    memory_usage_mb: float | None = None
    cpu_usage_percent: float | None = None
    queue_wait_time_ms: float | None = None
    api_calls_count: float | None = 0
    tokens_used: float | None = 0
    cost_usd: float | None = 0.0
    task_type: str | None = None
    priority: str | None = None
    retry_count: int = 0
    worker_name: str | None = None


class AttemptReport(Event, kw_only=True):
    producer: ClassVar[str] = "worker"
    id: int
    task_id: str
    attempt: int
    worker_name: str


class AttemptStarted(AttemptReport, kw_only=True):
    """An attempt has run past the worker's hold window: from now on core holds a lease on it,
    renewed by the worker's heartbeats. Short attempts report their start with their outcome."""

    event_type: ClassVar[str] = "attempt.started"
    started_at: str
    # how many times the broker delivered this order: more than once means earlier holders died
    # within their hold window (core counts them as lost deliveries)
    deliveries: int = 1


class AttemptProgress(AttemptReport, kw_only=True):
    """The handler reported progress (coalesced by the worker: only the newest one is sent)."""

    event_type: ClassVar[str] = "attempt.progress"
    progress_percentage: int
    current_step: str | None = None


class AttemptCompleted(AttemptReport, kw_only=True):
    """The attempt's handler returned."""

    event_type: ClassVar[str] = "attempt.completed"
    started_at: str
    finished_at: str
    result_data: Json
    metrics: AttemptMetrics


class AttemptFailed(AttemptReport, kw_only=True):
    """The attempt's handler raised, timed out, or its process died. Whether it runs again is core's
    decision (`retryable` and the task's retries left); the delay comes from the handler's policy."""

    event_type: ClassVar[str] = "attempt.failed"
    started_at: str | None = None
    finished_at: str
    error_message: str
    traceback: str | None = None
    retryable: bool = True
    retry_delay_seconds: float | None = None
    metrics: AttemptMetrics


class AttemptReleased(AttemptReport, kw_only=True):
    """A worker shutting down handed back an attempt it could not finish: core runs it again."""

    event_type: ClassVar[str] = "attempt.released"
    reason: str = "worker shutdown"


class ActiveAttempt(msgspec.Struct, kw_only=True):
    """An attempt a worker is running, as its heartbeat lists it."""

    id: int
    task_id: str
    attempt: int
    brand_id: int | None = None
    task_type: str | None = None
    started_at: str | None = None
    timeout_minutes: int | None = None


class WorkerHeartbeat(Event, kw_only=True):
    """A worker is alive: what it serves and what it runs (core renews the leases of
    `active_tasks` from it, monitoring shows the worker)."""

    event_type: ClassVar[str] = "worker.heartbeat"
    producer: ClassVar[str] = "worker"
    worker_name: str
    queues: list[str]
    concurrency: int
    task_types: list[Json]
    active_task_ids: list[str]
    active_tasks: list[ActiveAttempt]
    cpu_percent: float | None = None
    memory_percent: float | None = None
    load_average: list[float] | None = None
    processed_tasks: int = 0
    failed_tasks: int = 0
    started_at: str | None = None


# --------------------------------------------------------------------- core: the public task events


class TaskEvent(Event, kw_only=True):
    producer: ClassVar[str] = "core"
    id: int
    task_id: str


class TaskMetricsSummary(msgspec.Struct, kw_only=True):
    """The figures of a task's metrics that core shows with the task."""

    execution_time_ms: float | None = None
    memory_usage_mb: float | None = None
    cost_usd: float | None = None


class TaskCreated(TaskEvent, kw_only=True):
    """A task was accepted: the task as GET /tasks/{id}/ shows it (without its history), with
    where it came from."""

    event_type: ClassVar[str] = "task.created"
    task_type: str
    status: str
    priority: str
    queue_name: str
    description: str = ""
    progress_percentage: int = 0
    current_step: str | None = None
    brand: Json
    created_by: Json
    created_at: str
    updated_at: str
    scheduled_for: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    context_data: Json
    result_data: Json | None = None
    error_message: str | None = None
    retry_count: int = 0
    max_retries: int
    timeout_minutes: int
    worker_name: str | None = None
    has_metrics: bool = False
    metrics: TaskMetricsSummary | None = None
    is_resumable: bool = False
    is_periodic: bool = False
    persistent: bool = False
    periodic_task_id: int | None = None
    # the schedule slot that created it (periodic_task_id or cron_job_id, planned_time, key)
    origin: Json | None = None


class TaskUpdated(TaskEvent, kw_only=True):
    """Fields of a task changed (by its owner, or a status core set on its own: worker lost, job
    paused or resumed); `changed` holds the new values. When a task becomes persistent (core hears
    of its job), core states its current `status`, `attempt` and `priority` this way."""

    event_type: ClassVar[str] = "task.updated"
    changed: Json
    # why core changed the status on its own ("worker w-1 went offline", "paused by its owner")
    reason: str | None = None


class TaskStarted(TaskEvent, kw_only=True):
    """An attempt is running (sent for attempts that outlive the worker's hold window; a short one
    goes straight to task.completed or task.failed, which carry `started_at`)."""

    event_type: ClassVar[str] = "task.started"
    attempt: int
    worker_name: str
    started_at: str


class TaskProgress(TaskEvent, kw_only=True):
    """The running attempt reported progress (never lower than what the task showed before; a
    report of an older attempt is not passed on)."""

    event_type: ClassVar[str] = "task.progress"
    attempt: int
    progress_percentage: int
    current_step: str | None = None


class TaskOutcome(TaskEvent, kw_only=True):
    """What an outcome event says of its task besides the outcome, so that a consumer needs no
    other event to file it (type, priority, retries, times)."""

    attempt: int
    worker_name: str | None = None
    task_type: str
    priority: str
    retry_count: int
    max_retries: int
    created_at: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    metrics: AttemptMetrics


class TaskCompleted(TaskOutcome, kw_only=True):
    """An attempt succeeded: the task is `completed` with the handler's `result_data`."""

    event_type: ClassVar[str] = "task.completed"
    result_data: Json


class TaskFailed(TaskOutcome, kw_only=True):
    """An attempt failed. `will_retry`: core scheduled another attempt in `retry_delay_seconds`;
    `dead_lettered`: the task lost its worker too often and was parked."""

    event_type: ClassVar[str] = "task.failed"
    error_message: str
    will_retry: bool
    retry_delay_seconds: float | None = None
    dead_lettered: bool = False


class TaskRetried(TaskEvent, kw_only=True):
    """The task runs again: `reason` is `manual` (its owner asked) or `automatic` (a failed attempt
    with retries left, sent after its task.failed; the next attempt starts in `delay_seconds`)."""

    event_type: ClassVar[str] = "task.retried"
    retry_count: int
    reason: str  # "manual" or "automatic"
    delay_seconds: float | None = None


class TaskCancelled(TaskEvent, kw_only=True):
    """The task was cancelled from `previous_status`; a worker running `attempt` stops it."""

    event_type: ClassVar[str] = "task.cancelled"
    previous_status: str
    attempt: int | None = None
    worker_name: str | None = None


class TaskDeleted(TaskEvent, kw_only=True):
    """The task was deleted; workers drop or stop `attempt` if they hold it."""

    event_type: ClassVar[str] = "task.deleted"
    # the attempt that may still be queued or running: workers drop or stop it
    attempt: int | None = None


class TaskAttemptRevoked(TaskEvent, kw_only=True):
    """A worker must stop this attempt (superseded, cancelled, or a second run of it)."""

    event_type: ClassVar[str] = "task.attempt_revoked"
    attempt: int | None = None
    worker_name: str | None = None


# ------------------------------------------------------------------- the other services' events


class CheckpointSaved(Event, kw_only=True):
    """A persistent job saved a checkpoint (`is_recovery_point`: the job can resume from it)."""

    event_type: ClassVar[str] = "checkpoint.saved"
    producer: ClassVar[str] = "persistence"
    job_id: int
    base_task: int
    task_id: str
    checkpoint_id: int
    step_name: str | None = None
    is_recovery_point: bool = False
    can_resume: bool = False


class JobEvent(Event, kw_only=True):
    producer: ClassVar[str] = "persistence"
    job_id: int
    base_task: int
    task_id: str
    status: str
    can_resume: bool = False
    checkpoint_id: int | None = None
    from_step: str | None = None
    restart: bool | None = None
    priority: str | None = None


class JobCreated(JobEvent, kw_only=True):
    """A persistent job was created for a task (of a persistent type, or given one through the API)."""

    event_type: ClassVar[str] = "job.created"


class JobUpdated(JobEvent, kw_only=True):
    """A persistent job's status or `can_resume` changed."""

    event_type: ClassVar[str] = "job.updated"


class JobPaused(JobEvent, kw_only=True):
    """A persistent job was paused at checkpoint `checkpoint_id`: core pauses its task."""

    event_type: ClassVar[str] = "job.paused"


class JobResumed(JobEvent, kw_only=True):
    """A stopped job (paused, failed, interrupted) resumes from `checkpoint_id` / `from_step`: core
    runs its task again with that checkpoint in the work order's `resume`."""

    event_type: ClassVar[str] = "job.resumed"
    # persistence's auto-resume did it (a stopped job resumed without a person asking)
    automatic: bool = False


class JobRestarted(JobEvent, kw_only=True):
    """A job starts over from its first step (`restart`): core runs its task again."""

    event_type: ClassVar[str] = "job.restarted"


class MetricsRecorded(Event, kw_only=True):
    """A metrics record was created or changed through monitoring's API (the figures workers
    report reach core with task.completed / task.failed, not through this event)."""

    event_type: ClassVar[str] = "metrics.recorded"
    producer: ClassVar[str] = "monitoring"
    base_task: int
    task_id: str
    execution_time_ms: float | None = None
    memory_usage_mb: float | None = None
    cpu_usage_percent: float | None = None
    queue_wait_time_ms: float | None = None
    api_calls_count: float | None = None
    tokens_used: float | None = None
    cost_usd: float | None = None
    network_bytes_sent: float | None = None
    network_bytes_received: float | None = None
    disk_io_bytes: float | None = None
    error_count: float | None = None
    warning_count: float | None = None
    retry_count: float | None = None
    performance_score: float | None = None
    worker_name: str | None = None


class MetricsDeleted(Event, kw_only=True):
    """A task's metrics record was deleted through monitoring's API."""

    event_type: ClassVar[str] = "metrics.deleted"
    producer: ClassVar[str] = "monitoring"
    base_task: int
    task_id: str


class AlertTriggered(Event, kw_only=True):
    """An alert rule fired: `value` of `metric_field` crossed `threshold` (`condition`) for
    `task_ids`."""

    event_type: ClassVar[str] = "alert.triggered"
    producer: ClassVar[str] = "monitoring"
    rule_id: int
    name: str
    severity: str
    metric_field: str
    value: float
    threshold: float
    condition: str
    task_ids: list[str]
    alert_event_id: int | None = None
    notified: bool = False


class WorkerOffline(Event, kw_only=True):
    """Monitoring stopped hearing a worker's heartbeats: core runs again (or parks) the tasks it
    was running."""

    event_type: ClassVar[str] = "worker.offline"
    producer: ClassVar[str] = "monitoring"
    worker_name: str
    task_ids: list[str]


class ScheduleFired(Event, kw_only=True):
    """A schedule's slot came: core creates its task once (the slot's idempotency key)."""

    event_type: ClassVar[str] = "schedule.fired"
    producer: ClassVar[str] = "scheduling"
    periodic_task_id: int | None = None
    cron_job_id: int | None = None
    planned_time: str | None = None
    fired_at: str | None = None
    trigger: str | None = None
    idempotency_key: str
    create_task: Json | None = None


def _declared(family: type[Event]) -> list[type[Event]]:
    """Every class below `family` that names its event type, in the order they are declared."""
    found: list[type[Event]] = []
    for cls in family.__subclasses__():
        if "event_type" in vars(cls):
            found.append(cls)
        found += _declared(cls)
    return found


EVENTS: dict[str, type[Event]] = {cls.event_type: cls for cls in _declared(Event)}


def to_data(event: msgspec.Struct) -> Json:
    return msgspec.to_builtins(event)


def read(data: Json, as_type: type[S]) -> S:
    """An event's data as its class (extra fields are ignored: producers may add fields)."""
    return msgspec.convert(data, as_type, strict=False)


def parse(event_type: str, data: Json) -> Event | None:
    """The data of a known event type as its class; None for a type this catalog does not know."""
    cls = EVENTS.get(event_type)
    return None if cls is None else read(data, cls)


def read_work(body: bytes) -> WorkOrder:
    return msgspec.json.decode(body, type=WorkOrder, strict=False)


def work_body(order: WorkOrder) -> bytes:
    return msgspec.json.encode(order)
