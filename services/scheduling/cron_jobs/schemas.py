"""Cron job request and response schemas (docs/api.md §4)."""

from __future__ import annotations

import marshmallow as ma

from shared.api import ReadSchema, Schema, Timestamp, brand_of, creator_of
from shared.listing import CommaList, FlexibleBoolean, ListArgs, Ordering, page_schema
from shared.task_states import TASK_TYPE_PATTERN

from ..firing import FREQUENCY_CHOICES


class _CronJobFields(Schema):
    """`frequency` and `custom_cron` are checked by the service layer (FREQUENCY_NOT_SUPPORTED,
    INVALID_CRON_EXPRESSION), `timezone` too (TIMEZONE_INVALID)."""

    name = ma.fields.String(validate=ma.validate.Length(min=1, max=200))
    description = ma.fields.String(validate=ma.validate.Length(max=5000))
    task_type = ma.fields.String(validate=ma.validate.Regexp(TASK_TYPE_PATTERN))
    frequency = ma.fields.String(validate=ma.validate.Length(min=1, max=32))
    custom_cron = ma.fields.String(allow_none=True, validate=ma.validate.Length(max=120))
    timezone = ma.fields.String(validate=ma.validate.Length(min=1, max=64))
    is_active = ma.fields.Boolean()
    task_config = ma.fields.Dict(keys=ma.fields.String())


class CronJobCreateSchema(_CronJobFields):
    name = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=200))
    task_type = ma.fields.String(required=True, validate=ma.validate.Regexp(TASK_TYPE_PATTERN))
    frequency = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=32))


class CronJobUpdateSchema(_CronJobFields):
    """PUT and PATCH both take any subset of the writable fields."""


class CronJobSchema(ReadSchema):
    id = ma.fields.Integer()
    name = ma.fields.String()
    description = ma.fields.String()
    task_type = ma.fields.String()
    frequency = ma.fields.String()
    custom_cron = ma.fields.String(allow_none=True)
    timezone = ma.fields.String()
    is_active = ma.fields.Boolean()
    task_config = ma.fields.Dict()
    last_execution_at = Timestamp(attribute="last_run_at", allow_none=True)
    last_run_status = ma.fields.String(allow_none=True)
    next_run_at = Timestamp(allow_none=True)
    total_executions = ma.fields.Integer(attribute="executions_count")
    successful_executions = ma.fields.Integer()
    failed_executions = ma.fields.Integer()
    missed_runs_count = ma.fields.Integer()
    brand = ma.fields.Function(brand_of)
    created_by = ma.fields.Function(creator_of)
    created_at = Timestamp()
    updated_at = Timestamp()


CronJobPageSchema = page_schema(CronJobSchema, "CronJobPage")


class CronJobListArgs(ListArgs):
    frequency = CommaList(FREQUENCY_CHOICES)
    task_type = CommaList()
    is_active = FlexibleBoolean()
    ordering = Ordering(["created_at", "updated_at", "name", "next_run_at", "last_execution_at"])
