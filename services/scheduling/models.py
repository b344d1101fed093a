"""scheduling's tables: the schedules (periodic tasks, cron jobs), calendars and the run of every
fired slot."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import Boolean, ForeignKey, Index, Integer, MetaData, String, Table, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column, relationship

from shared.db import NAMING_CONVENTION, SQLITE_IDS, BigIntPK, JSONType, UTCDateTime
from shared.service_context import with_messaging_tables

PERIODIC = "periodic"
CRON_JOB = "cron"


class Base(DeclarativeBase):
    metadata = with_messaging_tables(MetaData(naming_convention=NAMING_CONVENTION))
    # every model here is mapped to a Table (SQLAlchemy types it as any FromClause), which
    # insert()/update()/delete() on `Model.__table__` rely on
    __table__: ClassVar[Table]


# what a new schedule starts with, set when it is built (a column default only applies at the
# INSERT, and the planner reads these before it)
SCHEDULE_DEFAULTS: dict[str, Any] = {
    "timezone": "UTC",
    "is_active": True,
    "description": "",
    "executions_count": 0,
    "missed_runs_count": 0,
    "misfire_policy": "run_once",
    "catchup_window_minutes": 60,
    "overlap_policy": "allow",
    "jitter_seconds": 0,
}


class ScheduleColumns:
    """What the scheduler needs of any schedule, whatever its kind. `next_planned_at` is the slot
    (a cron instant, in UTC); `next_run_at` is when it fires (the slot plus its jitter)."""

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    brand_id: Mapped[int] = mapped_column(Integer)
    brand_name: Mapped[str] = mapped_column(String(200), default="")
    created_by_id: Mapped[str] = mapped_column(String(100))
    created_by_username: Mapped[str] = mapped_column(String(200), default="")
    task_type: Mapped[str] = mapped_column(String(100))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    next_planned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_run_status: Mapped[str | None] = mapped_column(String(16))
    executions_count: Mapped[int] = mapped_column(Integer, default=0)
    missed_runs_count: Mapped[int] = mapped_column(Integer, default=0)
    misfire_policy: Mapped[str] = mapped_column(String(16), default="run_once")
    catchup_window_minutes: Mapped[int] = mapped_column(Integer, default=60)
    overlap_policy: Mapped[str] = mapped_column(String(24), default="allow")
    jitter_seconds: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    @declared_attr.directive
    def __table_args__(cls) -> tuple[Any, ...]:  # noqa: N805
        name = cls.__tablename__  # type: ignore[attr-defined]
        return (
            # the scheduler's claim: active rows by fire time (a range scan, never a full load)
            Index(f"ix_{name}_due", "is_active", "next_run_at"),
            Index(f"ix_{name}_brand_created", "brand_id", "created_at"),
            Index(f"ix_{name}_brand_next_run", "brand_id", "is_active", "next_run_at"),
            Index(f"ix_{name}_brand_type", "brand_id", "task_type"),
            *cls.extra_indexes(),  # type: ignore[attr-defined]
            SQLITE_IDS,  # a run's key names the schedule's id: a reused id would reuse its keys
        )


class PeriodicTask(ScheduleColumns, Base):
    __tablename__ = "periodic_tasks"
    kind = PERIODIC

    base_task: Mapped[int | None] = mapped_column(Integer)
    priority: Mapped[str | None] = mapped_column(String(10))
    description: Mapped[str] = mapped_column(Text, default="")
    context_data: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    max_retries: Mapped[int | None] = mapped_column(Integer)
    timeout_minutes: Mapped[int | None] = mapped_column(Integer)
    cron_expression: Mapped[str] = mapped_column(String(120))
    start_date: Mapped[datetime | None] = mapped_column(UTCDateTime)
    end_date: Mapped[datetime | None] = mapped_column(UTCDateTime)
    max_executions: Mapped[int | None] = mapped_column(Integer)
    schedule_config: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)

    attachments: Mapped[list[CalendarAttachment]] = relationship(
        back_populates="periodic_task", cascade="all, delete-orphan", order_by="CalendarAttachment.id"
    )

    @classmethod
    def extra_indexes(cls) -> tuple[Any, ...]:
        return (Index("ix_periodic_tasks_brand_status", "brand_id", "last_run_status"),)


class CronJob(ScheduleColumns, Base):
    __tablename__ = "cron_jobs"
    kind = CRON_JOB

    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    frequency: Mapped[str] = mapped_column(String(16))
    custom_cron: Mapped[str | None] = mapped_column(String(120))
    task_config: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    successful_executions: Mapped[int] = mapped_column(Integer, default=0)
    failed_executions: Mapped[int] = mapped_column(Integer, default=0)

    @classmethod
    def extra_indexes(cls) -> tuple[Any, ...]:
        return (UniqueConstraint("brand_id", "name", name="uq_cron_jobs_brand_name"),)


class Calendar(Base):
    __tablename__ = "calendars"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    brand_id: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    color: Mapped[str] = mapped_column(String(7), default="#3b82f6")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    default_timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    # ["2026-12-25", {"start": "2026-12-24", "end": "2027-01-02"}], dates in default_timezone
    excluded_dates: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    attachments: Mapped[list[CalendarAttachment]] = relationship(
        back_populates="calendar", cascade="all, delete-orphan", order_by="CalendarAttachment.id"
    )

    __table_args__ = (
        UniqueConstraint("brand_id", "name", name="uq_calendars_brand_name"),
        Index("ix_calendars_brand_created", "brand_id", "created_at"),
        SQLITE_IDS,
    )


class CalendarAttachment(Base):
    """A periodic task in a calendar, with an optional expression and config of its own there."""

    __tablename__ = "calendar_attachments"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    calendar_id: Mapped[int] = mapped_column(ForeignKey("calendars.id", ondelete="CASCADE"))
    periodic_task_id: Mapped[int] = mapped_column(ForeignKey("periodic_tasks.id", ondelete="CASCADE"))
    custom_cron: Mapped[str | None] = mapped_column(String(120))
    custom_config: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)

    calendar: Mapped[Calendar] = relationship(back_populates="attachments")
    periodic_task: Mapped[PeriodicTask] = relationship(back_populates="attachments")

    __table_args__ = (
        UniqueConstraint("calendar_id", "periodic_task_id", name="uq_calendar_attachments_pair"),
        Index("ix_calendar_attachments_task", "periodic_task_id"),
        SQLITE_IDS,
    )


class ScheduleRun(Base):
    """One fired slot. `idempotency_key` is the slot (`<kind>:<id>:<planned time>`, or a manual
    run's own key): unique, so a slot fires once whoever claims it; core creates one task per key."""

    __tablename__ = "schedule_runs"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    brand_id: Mapped[int] = mapped_column(Integer)
    schedule_kind: Mapped[str] = mapped_column(String(16))
    schedule_id: Mapped[int] = mapped_column(Integer)
    planned_time: Mapped[datetime] = mapped_column(UTCDateTime)
    fired_at: Mapped[datetime] = mapped_column(UTCDateTime)
    trigger: Mapped[str] = mapped_column(String(16))  # scheduler, catchup, execute_ready, manual
    idempotency_key: Mapped[str] = mapped_column(String(200))
    # pending (fired, task not heard of) -> running -> success | failed | cancelled; or skipped
    status: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(String(300), default="")
    task_pk: Mapped[int | None] = mapped_column(Integer)
    task_ref: Mapped[str | None] = mapped_column(String(40))
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    overlapped: Mapped[bool] = mapped_column(Boolean, default=False)
    cancel_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("idempotency_key", name="uq_schedule_runs_idempotency_key"),
        Index("ix_schedule_runs_schedule", "schedule_kind", "schedule_id", "planned_time"),
        Index("ix_schedule_runs_brand_fired", "brand_id", "fired_at"),
        Index("ix_schedule_runs_task", "task_pk"),
        Index("ix_schedule_runs_cancel", "cancel_requested_at"),
        SQLITE_IDS,
    )
