"""Job state schemas (docs/api.md §3): the detailed state a handler keeps for its job."""

from __future__ import annotations

import marshmallow as ma

from shared.api import ReadSchema, Schema, Timestamp
from shared.listing import FlexibleBoolean, ListArgs, Ordering, page_schema

from ..id_list import IdList


class JobStateSchema(ReadSchema):
    id = ma.fields.Integer()
    persistent_job = ma.fields.Function(lambda s: {"id": s.job_id, "base_task_id": s.job.base_task_id})
    pages_status = ma.fields.Dict()
    error_details = ma.fields.Dict()
    retry_count = ma.fields.Integer()
    max_retries = ma.fields.Integer()
    last_error_message = ma.fields.String(allow_none=True)
    can_retry = ma.fields.Function(lambda s: s.retry_count < s.max_retries)
    state_data = ma.fields.Dict()
    created_at = Timestamp()
    updated_at = Timestamp()


JobStatePageSchema = page_schema(JobStateSchema, "JobStatePage")


class _StateWritable(Schema):
    pages_status = ma.fields.Dict(keys=ma.fields.String())
    error_details = ma.fields.Dict(keys=ma.fields.String())
    retry_count = ma.fields.Integer(validate=ma.validate.Range(min=0))
    max_retries = ma.fields.Integer(validate=ma.validate.Range(min=0, max=1000))
    last_error_message = ma.fields.String(allow_none=True, validate=ma.validate.Length(max=10000))
    state_data = ma.fields.Dict(keys=ma.fields.String())


class JobStateUpsertSchema(_StateWritable):
    persistent_job = ma.fields.Integer(required=True, strict=True)


class JobStateUpdateSchema(_StateWritable):
    """PUT and PATCH both take any subset of the writable fields."""


class JobStateListArgs(ListArgs):
    persistent_job = IdList()
    can_retry = FlexibleBoolean()
    ordering = Ordering(["created_at", "updated_at"])
