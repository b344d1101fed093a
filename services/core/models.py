"""core's tables. Columns that other services feed (has_metrics, metrics, is_resumable,
is_periodic) are a local read model kept current from their events."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    ColumnElement,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from shared.db import NAMING_CONVENTION, SQLITE_IDS, BigIntPK, JSONType, UTCDateTime
from shared.service_context import with_messaging_tables


class Base(DeclarativeBase):
    metadata = with_messaging_tables(MetaData(naming_convention=NAMING_CONVENTION))
    # every model here is mapped to a Table (SQLAlchemy types it as any FromClause), which
    # insert()/update()/delete() on `Model.__table__` rely on
    __table__: ClassVar[Table]


class Task(Base):
    __tablename__ = "tasks"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(String(40), unique=True)
    brand_id: Mapped[int] = mapped_column(Integer)
    brand_name: Mapped[str] = mapped_column(String(200), default="")
    created_by_id: Mapped[str] = mapped_column(String(100))
    created_by_username: Mapped[str] = mapped_column(String(200), default="")
    task_type: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16))
    priority: Mapped[str] = mapped_column(String(10))
    priority_rank: Mapped[int] = mapped_column(SmallInteger)
    queue_name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, default="")
    progress_percentage: Mapped[int] = mapped_column(SmallInteger, default=0)
    current_step: Mapped[str | None] = mapped_column(String(200))
    context_data: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    result_data: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    error_message: Mapped[str | None] = mapped_column(Text)
    error_traceback: Mapped[str | None] = mapped_column(Text)
    retry_count: Mapped[int] = mapped_column(Integer, default=0)
    max_retries: Mapped[int] = mapped_column(Integer, default=3)
    timeout_minutes: Mapped[int] = mapped_column(Integer, default=60)
    scheduled_for: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    worker_name: Mapped[str | None] = mapped_column(String(200))

    # execution bookkeeping (not in the API); leases live in task_leases, off this wide row
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    dispatch_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    is_persistent: Mapped[bool] = mapped_column(default=False)
    lost_deliveries: Mapped[int] = mapped_column(Integer, default=0)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    idempotency_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    request_fingerprint: Mapped[str | None] = mapped_column(String(64))

    # read model fed by the other services' events
    has_metrics: Mapped[bool] = mapped_column(default=False)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    execution_time_ms: Mapped[float | None] = mapped_column(Float)
    is_resumable: Mapped[bool] = mapped_column(default=False)
    is_periodic: Mapped[bool] = mapped_column(default=False)
    periodic_task_id: Mapped[int | None] = mapped_column(Integer)

    history: Mapped[list[StatusChange]] = relationship(
        back_populates="task", cascade="all, delete-orphan", order_by="StatusChange.id.desc()"
    )

    __table_args__ = (
        # every list filter starts with the brand; these serve the filters and orderings of §1
        Index("ix_tasks_brand_created", "brand_id", "created_at"),
        Index("ix_tasks_brand_updated", "brand_id", "updated_at"),
        Index("ix_tasks_brand_status_created", "brand_id", "status", "created_at"),
        Index("ix_tasks_brand_priority_created", "brand_id", "priority_rank", "created_at"),
        Index("ix_tasks_brand_type_created", "brand_id", "task_type", "created_at"),
        Index("ix_tasks_brand_queue_created", "brand_id", "queue_name", "created_at"),
        Index("ix_tasks_brand_progress_created", "brand_id", "progress_percentage", "created_at"),
        Index("ix_tasks_brand_exec_time", "brand_id", "execution_time_ms"),
        Index("ix_tasks_brand_retry_count", "brand_id", "retry_count"),
        Index("ix_tasks_brand_resumable_created", "brand_id", "is_resumable", "created_at"),
        Index("ix_tasks_brand_periodic_created", "brand_id", "is_periodic", "created_at"),
        Index("ix_tasks_brand_periodic_status", "brand_id", "is_periodic", "status"),
        Index("ix_tasks_brand_metrics_created", "brand_id", "has_metrics", "created_at"),
        Index("ix_tasks_brand_idempotency", "brand_id", "idempotency_key", unique=True),
        # the dispatcher's query: only tasks waiting for their time (scheduled, retry delay)
        Index(
            "ix_tasks_dispatch_due",
            "dispatch_due_at",
            postgresql_where=text("dispatch_due_at IS NOT NULL"),
            sqlite_where=text("dispatch_due_at IS NOT NULL"),
        ),
        SQLITE_IDS,
    )


def search_text() -> ColumnElement[str]:
    """What `search` matches a substring of (lowercased), and what PostgreSQL's trigram index
    holds: one expression for both, since the planner uses the index only for the very same one."""
    # `op("||")` keeps each concatenation grouped, as PostgreSQL prints the indexed expression
    # back (`+` flattens them): alembic's autogenerate, comparing the texts, then finds the
    # model's index in the database
    concat = Task.task_id.op("||")(" ").op("||")(Task.task_type).op("||")(" ").op("||")(Task.description)
    return func.lower(concat)


# pg_trgm (created by revision 0001) makes `LIKE '%…%'` on the expression an index scan; SQLite
# (embedded mode) has no such index and scans
Index(
    "ix_tasks_search_trgm",
    search_text().label("search_text"),
    postgresql_using="gin",
    postgresql_ops={"search_text": "gin_trgm_ops"},
)


class StatusChange(Base):
    __tablename__ = "task_status_changes"
    __table_args__ = (SQLITE_IDS,)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    task_pk: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), index=True)
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(500), default="")
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    at: Mapped[datetime] = mapped_column(UTCDateTime)

    task: Mapped[Task] = relationship(back_populates="history")


class TaskLease(Base):
    """Core's hold on an attempt that a worker announced it runs past its hold window: renewed by
    the worker's heartbeats (a consumer of their own, never behind the reports), deleted with the
    attempt's outcome. When it expires on a running task, the worker is lost and the task runs
    again. No foreign key: a heartbeat may name a task deleted meanwhile (the reaper drops it)."""

    __tablename__ = "task_leases"

    task_pk: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=False)
    attempt: Mapped[int] = mapped_column(Integer)
    worker_name: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class WorkerPresence(Base):
    """What each live worker announced in its heartbeats: the types it runs, with their defaults."""

    __tablename__ = "worker_presence"

    worker_name: Mapped[str] = mapped_column(String(200), primary_key=True)
    queues: Mapped[list[str]] = mapped_column(JSONType, default=list)
    task_types: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    active_task_ids: Mapped[list[str]] = mapped_column(JSONType, default=list)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
