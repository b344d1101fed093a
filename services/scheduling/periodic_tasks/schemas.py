"""Periodic task request and response schemas (docs/api.md §4)."""

from __future__ import annotations

import marshmallow as ma

from shared.api import ReadSchema, RefusesReadOnly, Schema, Timestamp, brand_of, creator_of
from shared.listing import CommaList, FlexibleBoolean, ListArgs, Ordering, QueryArgs, page_schema
from shared.task_states import PRIORITIES, TASK_TYPE_PATTERN

from ..run_views import RunSchema

MISFIRE_POLICIES = ("skip", "run_once", "run_all")
OVERLAP_POLICIES = ("allow", "skip", "cancel_previous")
RUN_STATUSES = ("success", "failed", "running")
READ_ONLY_FIELDS = (
    "id", "next_run_at", "last_run_at", "last_run_status", "executions_count", "missed_runs_count",
    "brand", "created_by", "created_at", "updated_at", "cron_description",
)  # fmt: skip


class _RejectReadOnly(RefusesReadOnly):
    read_only_fields = READ_ONLY_FIELDS


class _ScheduleFields(_RejectReadOnly):
    """Cron expressions and time zones are checked by the service layer, which answers with
    their own error codes (INVALID_CRON_EXPRESSION, TIMEZONE_INVALID)."""

    task_type = ma.fields.String(validate=ma.validate.Regexp(TASK_TYPE_PATTERN))
    priority = ma.fields.String(validate=ma.validate.OneOf(PRIORITIES), allow_none=True)
    description = ma.fields.String(validate=ma.validate.Length(max=5000))
    context_data = ma.fields.Dict(keys=ma.fields.String())
    max_retries = ma.fields.Integer(validate=ma.validate.Range(0, 20), allow_none=True)
    timeout_minutes = ma.fields.Integer(validate=ma.validate.Range(1, 10080), allow_none=True)
    cron_expression = ma.fields.String(validate=ma.validate.Length(min=1, max=120))
    timezone = ma.fields.String(validate=ma.validate.Length(min=1, max=64))
    start_date = ma.fields.AwareDateTime(allow_none=True)
    end_date = ma.fields.AwareDateTime(allow_none=True)
    is_active = ma.fields.Boolean()
    max_executions = ma.fields.Integer(validate=ma.validate.Range(min=1), allow_none=True)
    schedule_config = ma.fields.Dict(keys=ma.fields.String())
    misfire_policy = ma.fields.String(validate=ma.validate.OneOf(MISFIRE_POLICIES))
    catchup_window_minutes = ma.fields.Integer(validate=ma.validate.Range(1, 7 * 24 * 60))
    overlap_policy = ma.fields.String(validate=ma.validate.OneOf(OVERLAP_POLICIES))
    jitter_seconds = ma.fields.Integer(validate=ma.validate.Range(0, 3600))
    calendars = ma.fields.List(ma.fields.Integer(), validate=ma.validate.Length(max=50))


class PeriodicTaskCreateSchema(_ScheduleFields):
    base_task = ma.fields.Integer(allow_none=True)
    cron_expression = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=120))


class PeriodicTaskUpdateSchema(_ScheduleFields):
    """PUT and PATCH both take any subset of the writable fields."""


class PeriodicTaskSchema(ReadSchema):
    id = ma.fields.Integer()
    base_task = ma.fields.Integer(allow_none=True)
    task_type = ma.fields.String()
    priority = ma.fields.String(allow_none=True)
    description = ma.fields.String()
    context_data = ma.fields.Dict()
    max_retries = ma.fields.Integer(allow_none=True)
    timeout_minutes = ma.fields.Integer(allow_none=True)
    cron_expression = ma.fields.String()
    timezone = ma.fields.String()
    start_date = Timestamp(allow_none=True)
    end_date = Timestamp(allow_none=True)
    next_run_at = Timestamp(allow_none=True)
    last_run_at = Timestamp(allow_none=True)
    last_run_status = ma.fields.String(allow_none=True)
    is_active = ma.fields.Boolean()
    max_executions = ma.fields.Integer(allow_none=True)
    executions_count = ma.fields.Integer()
    missed_runs_count = ma.fields.Integer()
    schedule_config = ma.fields.Dict()
    misfire_policy = ma.fields.String()
    catchup_window_minutes = ma.fields.Integer()
    overlap_policy = ma.fields.String()
    jitter_seconds = ma.fields.Integer()
    calendars = ma.fields.Function(lambda p: [a.calendar_id for a in p.attachments])
    brand = ma.fields.Function(brand_of)
    created_by = ma.fields.Function(creator_of)
    created_at = Timestamp()
    updated_at = Timestamp()


PeriodicTaskPageSchema = page_schema(PeriodicTaskSchema, "PeriodicTaskPage")
RunPageSchema = page_schema(RunSchema, "ScheduleRunPage")


class PeriodicTaskListArgs(ListArgs):
    is_active = FlexibleBoolean()
    cron_expression = ma.fields.String(validate=ma.validate.Length(max=120))
    timezone = CommaList()
    next_run_before = ma.fields.AwareDateTime()
    last_run_status = CommaList(RUN_STATUSES)
    task_type = CommaList()
    ordering = Ordering(
        ["created_at", "updated_at", "next_run_at", "last_run_at", "executions_count", "task_type"]
    )


class RunListArgs(ListArgs):
    status = CommaList(("pending", "running", "success", "failed", "cancelled", "skipped"))
    ordering = Ordering(["planned_time", "fired_at"])


class ValidateCronSchema(Schema):
    cron_expression = ma.fields.String(required=True, validate=ma.validate.Length(max=120))
    timezone = ma.fields.String(load_default="UTC")
    count = ma.fields.Integer(load_default=5, validate=ma.validate.Range(1, 50))


class OptimizeSchema(Schema):
    dry_run = ma.fields.Boolean(load_default=True)
    max_per_minute = ma.fields.Integer(load_default=3, validate=ma.validate.Range(1, 1000))
    spread_minutes = ma.fields.Integer(load_default=15, validate=ma.validate.Range(2, 59))


class TimezoneArgs(QueryArgs):
    timezone = ma.fields.String()


class AnalysisArgs(QueryArgs):
    days = ma.fields.Integer(load_default=7, validate=ma.validate.Range(1, 90))


# ---- responses of the views that build their bodies themselves (documentation)


class RunNowSchema(ReadSchema):
    """execute-now (periodic tasks) and execute (cron jobs)."""

    message = ma.fields.String()
    periodic_task_id = ma.fields.Integer(metadata={"description": "execute-now only"})
    cron_job_id = ma.fields.Integer(metadata={"description": "execute only"})
    run_id = ma.fields.Integer()
    idempotency_key = ma.fields.String()
    task = ma.fields.Dict(
        allow_none=True,
        metadata={"description": "core's task as core answered; null when core did not answer"},
    )


class ReadyForExecutionSchema(ReadSchema):
    count = ma.fields.Integer()
    tasks = ma.fields.List(ma.fields.Nested(PeriodicTaskSchema))


class _Executed(ReadSchema):
    periodic_task_id = ma.fields.Integer()
    execution_task_id = ma.fields.Integer(allow_none=True)
    executed_at = ma.fields.String(allow_none=True)


class _NotExecuted(ReadSchema):
    periodic_task_id = ma.fields.Integer()
    idempotency_key = ma.fields.String()
    error = ma.fields.String()


class ExecuteReadySchema(ReadSchema):
    executed = ma.fields.List(ma.fields.Nested(_Executed))
    failed = ma.fields.List(ma.fields.Nested(_NotExecuted))
    total = ma.fields.Integer()


class CronCheckSchema(ReadSchema):
    is_valid = ma.fields.Boolean()
    cron_expression = ma.fields.String()
    timezone = ma.fields.String()
    description = ma.fields.String()
    next_executions = ma.fields.List(ma.fields.String())
    error = ma.fields.String(metadata={"description": "when is_valid is false"})
    error_code = ma.fields.String(metadata={"description": "INVALID_CRON_EXPRESSION when is_valid is false"})


class _CronTemplate(ReadSchema):
    key = ma.fields.String()
    name = ma.fields.String()
    cron_expression = ma.fields.String()
    description = ma.fields.String()


class CronTemplatesSchema(ReadSchema):
    count = ma.fields.Integer()
    templates = ma.fields.List(ma.fields.Nested(_CronTemplate))


class _RunFigures(ReadSchema):
    runs = ma.fields.Integer()
    successful = ma.fields.Integer()
    failed = ma.fields.Integer()
    skipped = ma.fields.Integer()
    success_rate = ma.fields.Float(allow_none=True)


class ScheduleStatsSchema(ReadSchema):
    total_schedules = ma.fields.Integer()
    active_schedules = ma.fields.Integer()
    inactive_schedules = ma.fields.Integer()
    due_within_next_hour = ma.fields.Integer()
    overdue = ma.fields.Integer()
    missed_runs_total = ma.fields.Integer()
    last_24h = ma.fields.Nested(_RunFigures)
    last_7d = ma.fields.Nested(_RunFigures)
    generated_at = ma.fields.String()


class _Window(ReadSchema):
    start = ma.fields.String()
    end = ma.fields.String()
    days = ma.fields.Integer()


class _SchedulePerformance(ReadSchema):
    periodic_task_id = ma.fields.Integer()
    task_type = ma.fields.String(allow_none=True)
    runs = ma.fields.Integer()
    successful = ma.fields.Integer()
    failed = ma.fields.Integer()
    success_rate = ma.fields.Float(allow_none=True)
    avg_duration_seconds = ma.fields.Float(allow_none=True)
    start_delay_avg_seconds = ma.fields.Float(allow_none=True)
    start_delay_p95_seconds = ma.fields.Float(allow_none=True)
    fire_delay_avg_seconds = ma.fields.Float(allow_none=True)
    fire_delay_p95_seconds = ma.fields.Float(allow_none=True)
    overlaps_seen = ma.fields.Integer()
    skipped_for_overlap = ma.fields.Integer()


class PerformanceAnalysisSchema(ReadSchema):
    period = ma.fields.Nested(_Window)
    schedules = ma.fields.List(ma.fields.Nested(_SchedulePerformance))


class _DstChange(ReadSchema):
    at = ma.fields.String()
    local_time_before = ma.fields.String()
    local_time_after = ma.fields.String()
    offset_before = ma.fields.String()
    offset_after = ma.fields.String()


class _ZoneInfo(ReadSchema):
    timezone = ma.fields.String()
    current_time = ma.fields.String()
    utc_offset = ma.fields.String()
    abbreviation = ma.fields.String(allow_none=True)
    is_dst = ma.fields.Boolean()
    next_dst_change = ma.fields.Nested(_DstChange, allow_none=True)


class TimezoneInfoSchema(ReadSchema):
    server_timezone = ma.fields.String()
    accepted_timezones = ma.fields.List(ma.fields.String())
    timezone_info = ma.fields.Nested(_ZoneInfo, metadata={"description": "with ?timezone="})


class _CrowdedMinute(ReadSchema):
    at = ma.fields.String()
    schedules = ma.fields.Integer()


class _Proposal(ReadSchema):
    periodic_task_id = ma.fields.Integer()
    task_type = ma.fields.String()
    current_cron = ma.fields.String()
    proposed_cron = ma.fields.String()
    shift_minutes = ma.fields.Integer()


class OptimizeResultSchema(ReadSchema):
    dry_run = ma.fields.Boolean()
    applied = ma.fields.Boolean()
    max_per_minute = ma.fields.Integer()
    horizon_hours = ma.fields.Integer()
    schedules_analyzed = ma.fields.Integer()
    crowded_minutes = ma.fields.List(ma.fields.Nested(_CrowdedMinute))
    peak_per_minute_before = ma.fields.Integer()
    proposals = ma.fields.List(ma.fields.Nested(_Proposal))
