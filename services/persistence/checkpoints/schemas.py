"""Checkpoint request and response schemas (docs/api.md §3)."""

from __future__ import annotations

from typing import Any

import marshmallow as ma

from shared.api import ReadSchema, Schema, Timestamp
from shared.listing import CommaList, FlexibleBoolean, ListArgs, Ordering, page_schema

from ..id_list import IdList
from . import codec

LARGE_DATA_BYTES = 100 * 1024


def _data_or_none(checkpoint: Any) -> Any:
    """The original JSON (decompressed if need be); null when the stored bytes are corrupted."""
    try:
        return codec.verified(checkpoint.payload, checkpoint.is_compressed, checkpoint.checksum)
    except codec.CorruptedCheckpoint:
        return None


class CheckpointSummarySchema(ReadSchema):
    id = ma.fields.Integer()
    step_name = ma.fields.String()
    data_size_bytes = ma.fields.Integer()
    is_recovery_point = ma.fields.Boolean()
    is_compressed = ma.fields.Boolean()
    created_at = Timestamp()


class CheckpointSchema(ReadSchema):
    id = ma.fields.Integer()
    persistent_job = ma.fields.Function(lambda c: {"id": c.job_id, "base_task_id": c.job.base_task_id})
    step_name = ma.fields.String()
    checkpoint_data = ma.fields.Function(_data_or_none)
    data_size_bytes = ma.fields.Integer()
    stored_size_bytes = ma.fields.Integer()
    is_recovery_point = ma.fields.Boolean()
    is_compressed = ma.fields.Boolean()
    checksum = ma.fields.String()
    is_valid = ma.fields.Function(lambda c: _data_or_none(c) is not None)
    created_at = Timestamp()
    updated_at = Timestamp()


class SavedCheckpointSchema(CheckpointSchema):
    control = ma.fields.String(
        metadata={"description": "continue, pause or cancel: what the handler does next"}
    )


CheckpointPageSchema = page_schema(CheckpointSchema, "CheckpointPage")


class CheckpointCreateSchema(Schema):
    persistent_job = ma.fields.Integer(required=True, strict=True)
    step_name = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=200))
    checkpoint_data = ma.fields.Dict(keys=ma.fields.String(), required=True)
    is_recovery_point = ma.fields.Boolean(load_default=True)
    progress_percentage = ma.fields.Float(allow_none=True, validate=ma.validate.Range(0, 100))
    completed_steps = ma.fields.Integer(allow_none=True, validate=ma.validate.Range(min=0))
    total_steps = ma.fields.Integer(allow_none=True, validate=ma.validate.Range(min=0))


class CheckpointUpdateSchema(Schema):
    step_name = ma.fields.String(validate=ma.validate.Length(min=1, max=200))
    checkpoint_data = ma.fields.Dict(keys=ma.fields.String())
    is_recovery_point = ma.fields.Boolean()


class CheckpointListArgs(ListArgs):
    range_filters = {"data_size_bytes": lambda: ma.fields.Integer()}
    persistent_job = IdList()
    step_name = CommaList()
    has_large_data = FlexibleBoolean()
    is_recovery_point = FlexibleBoolean()
    is_compressed = FlexibleBoolean()
    ordering = Ordering(["created_at", "data_size_bytes", "step_name"])


class OptimizeStorageSchema(Schema):
    compress_old_checkpoints = ma.fields.Boolean(load_default=True)
    days_old_threshold = ma.fields.Float(load_default=7, validate=ma.validate.Range(min=0))
    max_checkpoints_per_job = ma.fields.Integer(
        load_default=None, allow_none=True, validate=ma.validate.Range(min=1)
    )


class _OptimizationResults(ReadSchema):
    checkpoints_compressed = ma.fields.Integer()
    storage_saved_mb = ma.fields.Float()
    old_checkpoints_archived = ma.fields.Integer()
    total_checkpoints_processed = ma.fields.Integer()


class OptimizeStorageResultSchema(ReadSchema):
    optimization_results = ma.fields.Nested(_OptimizationResults)
