"""persistence's tables: the jobs, their checkpoints and handler states, and a local read model
of core's tasks (`task_refs`, fed by task.* events) for `base_task` summaries and brand checks."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from shared.db import NAMING_CONVENTION, SQLITE_IDS, BigIntPK, JSONType, UTCDateTime
from shared.service_context import with_messaging_tables


class Base(DeclarativeBase):
    metadata = with_messaging_tables(MetaData(naming_convention=NAMING_CONVENTION))
    # every model here is mapped to a Table (SQLAlchemy types it as any FromClause), which
    # insert()/update()/delete() on `Model.__table__` rely on
    __table__: ClassVar[Table]


class TaskRef(Base):
    """What this service knows of one of core's tasks (never read from core's database)."""

    __tablename__ = "task_refs"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)  # core's id
    brand_id: Mapped[int] = mapped_column(Integer, index=True)
    task_id: Mapped[str] = mapped_column(String(40), default="")
    task_type: Mapped[str] = mapped_column(String(100), default="")
    status: Mapped[str] = mapped_column(String(16), default="pending")
    priority: Mapped[str] = mapped_column(String(10), default="normal")
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PersistentJob(Base):
    __tablename__ = "persistent_jobs"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    brand_id: Mapped[int] = mapped_column(Integer)
    base_task_id: Mapped[int] = mapped_column(ForeignKey("task_refs.id"), unique=True)
    status: Mapped[str] = mapped_column(String(16))
    job_data: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    current_step: Mapped[str | None] = mapped_column(String(200))
    total_steps: Mapped[int | None] = mapped_column(Integer)
    completed_steps: Mapped[int] = mapped_column(Integer, default=0)
    progress_percentage: Mapped[float] = mapped_column(Float, default=0.0)
    can_resume: Mapped[bool] = mapped_column(default=False)
    resume_from_step: Mapped[str | None] = mapped_column(String(200))
    interruption_reason: Mapped[str | None] = mapped_column(Text)
    interrupted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_checkpoint_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    checkpoints_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    # run bookkeeping (not all in the API)
    attempt: Mapped[int] = mapped_column(Integer, default=0)  # the task attempt the job last ran in
    # how many times the broker had delivered that attempt when its handler last started: a higher
    # count for the same attempt means the worker running it was lost and another took it over
    delivery: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    pause_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resumed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # the checkpoint the next run starts from (chosen by resume/restart); None: newest recovery point
    resume_checkpoint_id: Mapped[int | None] = mapped_column(BigInteger)
    # a restart starts a new run: older checkpoints are not recovery points for it
    run_epoch_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resume_count: Mapped[int] = mapped_column(Integer, default=0)
    auto_resume_count: Mapped[int] = mapped_column(Integer, default=0)
    restart_count: Mapped[int] = mapped_column(Integer, default=0)
    interruptions_count: Mapped[int] = mapped_column(Integer, default=0)

    base_task: Mapped[TaskRef] = relationship(lazy="joined", innerjoin=True)
    state: Mapped[JobState | None] = relationship(back_populates="job", lazy="select", uselist=False)

    __table_args__ = (
        Index("ix_persistent_jobs_brand_created", "brand_id", "created_at"),
        Index("ix_persistent_jobs_brand_updated", "brand_id", "updated_at"),
        Index("ix_persistent_jobs_brand_status_created", "brand_id", "status", "created_at"),
        Index("ix_persistent_jobs_brand_resumable_created", "brand_id", "can_resume", "created_at"),
        Index("ix_persistent_jobs_brand_progress", "brand_id", "progress_percentage"),
        Index("ix_persistent_jobs_brand_step", "brand_id", "current_step"),
        Index("ix_persistent_jobs_brand_checkpoints", "brand_id", "checkpoints_count"),
        # the auto-resume loop and cleanup-old scan by status and time across brands
        Index("ix_persistent_jobs_status_interrupted", "status", "interrupted_at"),
        Index("ix_persistent_jobs_status_finished", "status", "finished_at"),
        SQLITE_IDS,
    )


class Checkpoint(Base):
    """`payload` holds the JSON as submitted (zlib-compressed when `is_compressed`); `checksum` is
    the SHA-256 of its canonical serialization, so any change of the stored bytes is detected."""

    __tablename__ = "checkpoints"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    brand_id: Mapped[int] = mapped_column(Integer)
    job_id: Mapped[int] = mapped_column(ForeignKey("persistent_jobs.id", ondelete="CASCADE"))
    step_name: Mapped[str] = mapped_column(String(200))
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    data_size_bytes: Mapped[int] = mapped_column(Integer)
    stored_size_bytes: Mapped[int] = mapped_column(Integer)
    is_recovery_point: Mapped[bool] = mapped_column(default=False)
    is_compressed: Mapped[bool] = mapped_column(default=False)
    checksum: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    job: Mapped[PersistentJob] = relationship(lazy="joined", innerjoin=True)

    __table_args__ = (
        Index("ix_checkpoints_brand_created", "brand_id", "created_at"),
        Index("ix_checkpoints_brand_updated", "brand_id", "updated_at"),
        Index("ix_checkpoints_brand_step", "brand_id", "step_name"),
        Index("ix_checkpoints_brand_size", "brand_id", "data_size_bytes"),
        Index("ix_checkpoints_job_created", "job_id", "created_at"),
        Index("ix_checkpoints_job_recovery", "job_id", "is_recovery_point", "created_at"),
        SQLITE_IDS,
    )


class JobState(Base):
    """The detailed state a handler keeps for its job (one per job)."""

    __tablename__ = "job_states"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    brand_id: Mapped[int] = mapped_column(Integer)
    job_id: Mapped[int] = mapped_column(ForeignKey("persistent_jobs.id", ondelete="CASCADE"), unique=True)
    pages_status: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    error_details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    retry_count: Mapped[int] = mapped_column(Integer, default=0)
    max_retries: Mapped[int] = mapped_column(Integer, default=3)
    last_error_message: Mapped[str | None] = mapped_column(Text)
    state_data: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    job: Mapped[PersistentJob] = relationship(back_populates="state", lazy="joined", innerjoin=True)

    __table_args__ = (
        Index("ix_job_states_brand_created", "brand_id", "created_at"),
        Index("ix_job_states_brand_updated", "brand_id", "updated_at"),
        SQLITE_IDS,
    )
