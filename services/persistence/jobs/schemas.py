"""Persistent job request and response schemas (docs/api.md §3)."""

from __future__ import annotations

from typing import Any

import marshmallow as ma

from shared.api import ReadSchema, Schema, Timestamp
from shared.listing import CommaList, FlexibleBoolean, ListArgs, Ordering, QueryArgs, page_schema

from ..checkpoints.schemas import CheckpointSummarySchema
from ..id_list import IdList
from ..job_states.schemas import JobStateSchema
from . import lifecycle as lc

STEP = ma.validate.Length(min=1, max=200)


class BaseTaskSchema(ReadSchema):
    id = ma.fields.Integer()
    task_id = ma.fields.String()
    task_type = ma.fields.String()
    status = ma.fields.String()
    priority = ma.fields.String()


class JobSchema(ReadSchema):
    id = ma.fields.Integer()
    base_task = ma.fields.Nested(BaseTaskSchema)
    job_data = ma.fields.Dict()
    current_step = ma.fields.String(allow_none=True)
    total_steps = ma.fields.Integer(allow_none=True)
    completed_steps = ma.fields.Integer()
    progress_percentage = ma.fields.Float()
    status = ma.fields.String()
    can_resume = ma.fields.Boolean()
    resume_from_step = ma.fields.String(allow_none=True)
    interruption_reason = ma.fields.String(allow_none=True)
    last_checkpoint_at = Timestamp(allow_none=True)
    checkpoints_count = ma.fields.Integer()
    estimated_completion = ma.fields.Function(lambda job: lc.estimated_completion(job))
    pause_requested = ma.fields.Function(lambda job: job.pause_requested_at is not None)
    created_at = Timestamp()
    updated_at = Timestamp()


class JobDetailSchema(JobSchema):
    newest_checkpoints = ma.fields.List(ma.fields.Nested(CheckpointSummarySchema))
    job_state = ma.fields.Nested(JobStateSchema, attribute="state", allow_none=True)
    resume_count = ma.fields.Integer()
    restart_count = ma.fields.Integer()
    interruptions_count = ma.fields.Integer()


JobPageSchema = page_schema(JobSchema, "PersistentJobPage")


class _JobWritable(Schema):
    job_data = ma.fields.Dict(keys=ma.fields.String())
    current_step = ma.fields.String(allow_none=True, validate=STEP)
    total_steps = ma.fields.Integer(allow_none=True, validate=ma.validate.Range(min=0))
    completed_steps = ma.fields.Integer(validate=ma.validate.Range(min=0))
    progress_percentage = ma.fields.Float(validate=ma.validate.Range(0, 100))


class JobCreateSchema(_JobWritable):
    base_task = ma.fields.Integer(required=True, strict=True)


class JobUpdateSchema(_JobWritable):
    """PUT and PATCH both take any subset of the writable fields."""


class JobListArgs(ListArgs):
    range_filters = {"progress_percentage": lambda: ma.fields.Float()}
    base_task = IdList()
    can_resume = FlexibleBoolean()
    status = CommaList(lc.STATUSES)
    current_step = CommaList()
    progress_gte = ma.fields.Float()
    progress_lte = ma.fields.Float()
    has_checkpoints = FlexibleBoolean()
    ordering = Ordering(["created_at", "updated_at", "progress_percentage"])


class PriorityBoost(ma.fields.Integer):
    """Levels to raise the task's priority by (0-3); true means one level."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool):
            return int(value)
        return super()._deserialize(value, attr, data, **kwargs)


class ResumeSchema(Schema):
    from_checkpoint = ma.fields.Integer(allow_none=True, strict=True)
    reset_current_step = ma.fields.Boolean(load_default=False)
    priority_boost = PriorityBoost(load_default=0, allow_none=True, validate=ma.validate.Range(0, 3))


class ResumeResultSchema(ReadSchema):
    message = ma.fields.String()
    job_id = ma.fields.Integer()
    resumed_from = ma.fields.Dict()
    current_step = ma.fields.String(allow_none=True)
    progress_percentage = ma.fields.Float()
    estimated_completion = ma.fields.String(allow_none=True)
    resumed_at = ma.fields.String()
    priority = ma.fields.String()


class PauseResultSchema(ReadSchema):
    message = ma.fields.String()
    job_id = ma.fields.Integer()
    paused_at = ma.fields.String()
    current_progress = ma.fields.Float()
    checkpoint_created = ma.fields.Boolean()
    can_resume = ma.fields.Boolean()
    status = ma.fields.String()


class RestartSchema(Schema):
    preserve_checkpoints = ma.fields.Boolean(load_default=False)
    reset_progress = ma.fields.Boolean(load_default=True)
    from_step = ma.fields.String(allow_none=True, validate=STEP)


class RestartResultSchema(ReadSchema):
    message = ma.fields.String()
    job_id = ma.fields.Integer()
    restarted_at = ma.fields.String()
    from_step = ma.fields.String(allow_none=True)
    from_checkpoint = ma.fields.Integer(allow_none=True)
    checkpoints_preserved = ma.fields.Boolean()
    checkpoints_deleted = ma.fields.Integer()
    progress_percentage = ma.fields.Float()
    status = ma.fields.String()


class ResumableArgs(QueryArgs):
    priority = CommaList(lc.PRIORITIES)
    interrupted_before = ma.fields.AwareDateTime()
    progress_gte = ma.fields.Float(validate=ma.validate.Range(0, 100))
    has_recent_checkpoint = FlexibleBoolean()


class AutoResumeSchema(Schema):
    max_jobs = ma.fields.Integer(load_default=10, validate=ma.validate.Range(1, 100))
    priority_threshold = ma.fields.String(load_default="low", validate=ma.validate.OneOf(lc.PRIORITIES))
    min_progress_percentage = ma.fields.Float(load_default=0.0, validate=ma.validate.Range(0, 100))
    max_interruption_hours = ma.fields.Float(
        load_default=24.0, validate=ma.validate.Range(min=0, min_inclusive=False, max=24 * 365 * 10)
    )


class CleanupSchema(Schema):
    days_old = ma.fields.Integer(load_default=30, validate=ma.validate.Range(min=0, max=36_500))
    preserve_failed = ma.fields.Boolean(load_default=True)
    preserve_with_checkpoints = ma.fields.Boolean(load_default=False)
    dry_run = ma.fields.Boolean(load_default=False)


class ValidateConfigSchema(Schema):
    job_data = ma.fields.Dict(keys=ma.fields.String(), load_default=dict)
    estimated_duration_hours = ma.fields.Float(
        required=True, validate=ma.validate.Range(min=0, min_inclusive=False, max=24 * 365)
    )
    checkpoint_frequency = ma.fields.Float(
        load_default=5.0, validate=ma.validate.Range(min=0, min_inclusive=False, max=24 * 60)
    )


class StatsArgs(QueryArgs):
    days = ma.fields.Integer(load_default=30, validate=ma.validate.Range(1, 365))
    include_trends = FlexibleBoolean(load_default=False)


class ResumeRequestSchema(Schema):
    job_id = ma.fields.Integer(allow_none=True)
    checkpoint_id = ma.fields.Integer(allow_none=True)
    from_step = ma.fields.String(allow_none=True)
    restart = ma.fields.Boolean(load_default=False)


class StartRunSchema(Schema):
    """The worker's call when a handler of a persistent type starts (docs/persistence.md)."""

    base_task = ma.fields.Integer(required=True, strict=True)
    task_id = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=40))
    task_type = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=100))
    # the work order's: the task's row is made from this call when this service has not heard of
    # the task yet (core marks it persistent only once it hears of the job)
    priority = ma.fields.String(load_default="normal", validate=ma.validate.OneOf(lc.PRIORITIES))
    attempt = ma.fields.Integer(required=True, validate=ma.validate.Range(min=0, max=2**31 - 1))
    # the broker's delivery count of the attempt's work order (more than 1: its earlier holder was lost)
    delivery = ma.fields.Integer(load_default=1, validate=ma.validate.Range(min=1, max=2**31 - 1))
    resume = ma.fields.Nested(ResumeRequestSchema, allow_none=True, load_default=None)


class StartRunResultSchema(ReadSchema):
    job_id = ma.fields.Integer()
    status = ma.fields.String()
    control = ma.fields.String()
    resume_from = ma.fields.Dict(allow_none=True)


# ---- responses of the views that build their bodies themselves (documentation)


class _TaskRefView(ReadSchema):
    id = ma.fields.Integer()
    task_id = ma.fields.String(allow_none=True)
    task_type = ma.fields.String(allow_none=True)
    status = ma.fields.String(allow_none=True)
    priority = ma.fields.String(allow_none=True)


class _LastCheckpoint(ReadSchema):
    id = ma.fields.Integer()
    step_name = ma.fields.String(allow_none=True)
    created_at = ma.fields.String(allow_none=True)
    checkpoint_data = ma.fields.Raw(allow_none=True, metadata={"description": "null when corrupted"})
    is_valid = ma.fields.Boolean()


class _ResumableJob(ReadSchema):
    id = ma.fields.Integer()
    base_task = ma.fields.Nested(_TaskRefView)
    status = ma.fields.String()
    progress_percentage = ma.fields.Float()
    last_checkpoint = ma.fields.Nested(_LastCheckpoint, allow_none=True)
    interruption_reason = ma.fields.String(allow_none=True)
    interrupted_at = ma.fields.String(allow_none=True)
    estimated_resume_time_minutes = ma.fields.Float(allow_none=True)
    priority = ma.fields.String(allow_none=True)


class ResumableListSchema(ReadSchema):
    resumable_jobs = ma.fields.Integer()
    jobs = ma.fields.List(ma.fields.Nested(_ResumableJob))
    recommendations = ma.fields.List(ma.fields.String())


class _ResumeOutcome(ReadSchema):
    job_id = ma.fields.Integer()
    status = ma.fields.String(metadata={"description": "resumed or skipped"})
    reason = ma.fields.String()
    message = ma.fields.String()


class AutoResumeResultSchema(ReadSchema):
    resumed_jobs = ma.fields.Integer()
    skipped_jobs = ma.fields.Integer()
    results = ma.fields.List(ma.fields.Nested(_ResumeOutcome))


class _CleanupSummary(ReadSchema):
    jobs_reviewed = ma.fields.Integer()
    jobs_deleted = ma.fields.Integer()
    jobs_preserved = ma.fields.Integer()
    checkpoints_deleted = ma.fields.Integer()
    storage_freed_mb = ma.fields.Float()


class CleanupResultSchema(ReadSchema):
    cleanup_summary = ma.fields.Nested(_CleanupSummary)
    preserved_reasons = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Integer())
    deleted_job_types = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Integer())
    dry_run = ma.fields.Boolean()


class ValidateConfigResultSchema(ReadSchema):
    valid = ma.fields.Boolean()
    recommendations = ma.fields.List(ma.fields.String())
    warnings = ma.fields.List(ma.fields.String())
    estimated_checkpoints = ma.fields.Integer()
    estimated_storage_mb = ma.fields.Float()


class _StatsPeriod(ReadSchema):
    days = ma.fields.Integer()
    start = ma.fields.String()
    end = ma.fields.String()


class _StatsTotals(ReadSchema):
    jobs = ma.fields.Integer()
    by_status = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Integer())
    resumable = ma.fields.Integer()
    avg_progress_percentage = ma.fields.Float()


class _ResumeStats(ReadSchema):
    resumes = ma.fields.Integer()
    automatic_resumes = ma.fields.Integer()
    restarts = ma.fields.Integer()
    jobs_resumed = ma.fields.Integer()
    resumed_then_completed = ma.fields.Integer()
    resume_success_rate = ma.fields.Float(allow_none=True)


class _CheckpointStats(ReadSchema):
    total = ma.fields.Integer()
    recovery_points = ma.fields.Integer()
    compressed = ma.fields.Integer()
    large = ma.fields.Integer()
    data_size_mb = ma.fields.Float()
    stored_size_mb = ma.fields.Float()
    avg_size_kb = ma.fields.Float()
    avg_per_job = ma.fields.Float()


class _FailureReason(ReadSchema):
    reason = ma.fields.String()
    jobs = ma.fields.Integer()


class _FailureAnalysis(ReadSchema):
    failed = ma.fields.Integer()
    interrupted = ma.fields.Integer()
    cancelled = ma.fields.Integer()
    interruptions = ma.fields.Integer()
    failure_rate = ma.fields.Float(allow_none=True)
    top_reasons = ma.fields.List(ma.fields.Nested(_FailureReason))


class _DayTrend(ReadSchema):
    date = ma.fields.String()
    created = ma.fields.Integer()
    completed = ma.fields.Integer()
    failed = ma.fields.Integer()


class JobStatsSchema(ReadSchema):
    period = ma.fields.Nested(_StatsPeriod)
    totals = ma.fields.Nested(_StatsTotals)
    resume_stats = ma.fields.Nested(_ResumeStats)
    checkpoint_stats = ma.fields.Nested(_CheckpointStats)
    failure_analysis = ma.fields.Nested(_FailureAnalysis)
    trends = ma.fields.List(ma.fields.Nested(_DayTrend), metadata={"description": "with include_trends"})
