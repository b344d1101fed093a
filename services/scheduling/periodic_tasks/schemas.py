"""Periodic task request and response schemas (API.md §4)."""

from __future__ import annotations

import marshmallow as ma

from shared.api import ReadSchema, Schema, Timestamp
from shared.listing import CommaList, FlexibleBoolean, ListArgs, Ordering, page_schema

from ..run_views import RunSchema, brand_of, creator_of

TASK_TYPE_PATTERN = r"^[a-z0-9_.-]{1,100}$"
PRIORITIES = ("low", "normal", "high", "critical")
MISFIRE_POLICIES = ("skip", "run_once", "run_all")
OVERLAP_POLICIES = ("allow", "skip", "cancel_previous")
RUN_STATUSES = ("success", "failed", "running")
READ_ONLY_FIELDS = (
    "id", "next_run_at", "last_run_at", "last_run_status", "executions_count", "missed_runs_count",
    "brand", "created_by", "created_at", "updated_at", "cron_description",
)  # fmt: skip


class _RejectReadOnly(Schema):
    @ma.pre_load
    def reject_read_only(self, data: dict, **_: object) -> dict:
        if isinstance(data, dict):
            errors = {k: ["This field is read-only."] for k in data if k in READ_ONLY_FIELDS}
            if errors:
                raise ma.ValidationError(errors)
        return data


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


class TimezoneArgs(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE

    timezone = ma.fields.String()


class AnalysisArgs(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE

    days = ma.fields.Integer(load_default=7, validate=ma.validate.Range(1, 90))
