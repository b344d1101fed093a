"""monitoring's tables. `task_views` is a local read model of core's tasks (from its events);
metrics records carry a copy of their task's type and priority so that analytics group without a join."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, MetaData, String, Table, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from shared.db import NAMING_CONVENTION, SQLITE_IDS, BigIntPK, JSONType, UTCDateTime
from shared.service_context import with_messaging_tables


class Base(DeclarativeBase):
    metadata = with_messaging_tables(MetaData(naming_convention=NAMING_CONVENTION))
    # every model here is mapped to a Table (SQLAlchemy types it as any FromClause), which
    # insert()/update()/delete() on `Model.__table__` rely on
    __table__: ClassVar[Table]


class TaskView(Base):
    """What monitoring knows of a core task (never asked of core: learnt from task.* events)."""

    __tablename__ = "task_views"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    task_id: Mapped[str] = mapped_column(String(40), index=True)
    brand_id: Mapped[int] = mapped_column(Integer)
    task_type: Mapped[str] = mapped_column(String(100), default="")
    status: Mapped[str] = mapped_column(String(16), default="pending")
    priority: Mapped[str] = mapped_column(String(10), default="normal")
    queue_name: Mapped[str] = mapped_column(String(100), default="normal")
    worker_name: Mapped[str | None] = mapped_column(String(200))
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    retry_count: Mapped[int] = mapped_column(Integer, default=0)
    max_retries: Mapped[int] = mapped_column(Integer, default=3)
    created_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_task_views_brand_type", "brand_id", "task_type"),)


class MetricsRecord(Base):
    __tablename__ = "metrics_records"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    brand_id: Mapped[int] = mapped_column(Integer)
    base_task: Mapped[int] = mapped_column(BigInteger, unique=True)
    task_id: Mapped[str] = mapped_column(String(40))
    task_type: Mapped[str] = mapped_column(String(100), default="")
    priority: Mapped[str] = mapped_column(String(10), default="normal")
    execution_time_ms: Mapped[float] = mapped_column(Float, default=0.0)
    memory_usage_mb: Mapped[float] = mapped_column(Float, default=0.0)
    cpu_usage_percent: Mapped[float] = mapped_column(Float, default=0.0)
    network_bytes_sent: Mapped[int] = mapped_column(BigInteger, default=0)
    network_bytes_received: Mapped[int] = mapped_column(BigInteger, default=0)
    disk_io_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    api_calls_count: Mapped[int] = mapped_column(Integer, default=0)
    tokens_used: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    error_count: Mapped[int] = mapped_column(Integer, default=0)
    warning_count: Mapped[int] = mapped_column(Integer, default=0)
    retry_count: Mapped[int] = mapped_column(Integer, default=0)
    worker_name: Mapped[str | None] = mapped_column(String(200))
    queue_wait_time_ms: Mapped[float] = mapped_column(Float, default=0.0)
    performance_score: Mapped[float] = mapped_column(Float, default=0.0)
    # the measured attempt ended well (task.completed) or not (task.failed); feeds success rates
    succeeded: Mapped[bool] = mapped_column(default=True)
    # the attempt these figures belong to: an older attempt arriving late changes nothing
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    # the task's summary (`base_task` on read), loaded with one IN query per page
    view: Mapped[TaskView | None] = relationship(
        primaryjoin="foreign(MetricsRecord.base_task) == TaskView.id", lazy="selectin", viewonly=True
    )

    __table_args__ = (
        # every list, filter and analytics query starts with the brand (and usually a time window)
        Index("ix_metrics_brand_created", "brand_id", "created_at"),
        Index("ix_metrics_brand_updated", "brand_id", "updated_at"),
        Index("ix_metrics_brand_type_created", "brand_id", "task_type", "created_at"),
        Index("ix_metrics_brand_worker_created", "brand_id", "worker_name", "created_at"),
        Index("ix_metrics_brand_exec_time", "brand_id", "execution_time_ms"),
        # exact percentiles, minimum and maximum of a type's execution time (metrics/percentiles.py)
        Index("ix_metrics_brand_type_exec_time", "brand_id", "task_type", "execution_time_ms", "created_at"),
        Index("ix_metrics_brand_memory", "brand_id", "memory_usage_mb"),
        Index("ix_metrics_brand_cpu", "brand_id", "cpu_usage_percent"),
        Index("ix_metrics_brand_cost", "brand_id", "cost_usd"),
        Index("ix_metrics_brand_tokens", "brand_id", "tokens_used"),
        Index("ix_metrics_brand_errors", "brand_id", "error_count"),
        Index("ix_metrics_brand_queue_wait", "brand_id", "queue_wait_time_ms"),
        Index("ix_metrics_brand_score", "brand_id", "performance_score"),
        SQLITE_IDS,
    )


class MetricsDaily(Base):
    """Sums of the records per brand, UTC day, task type and priority (metrics/rollup.py)."""

    __tablename__ = "metrics_daily"

    brand_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # YYYY-MM-DD (UTC)
    task_type: Mapped[str] = mapped_column(String(100), primary_key=True)
    priority: Mapped[str] = mapped_column(String(10), primary_key=True)
    runs: Mapped[int] = mapped_column(Integer, default=0)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    execution_time_ms: Mapped[float] = mapped_column(Float, default=0.0)
    memory_usage_mb: Mapped[float] = mapped_column(Float, default=0.0)
    cpu_usage_percent: Mapped[float] = mapped_column(Float, default=0.0)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    queue_wait_time_ms: Mapped[float] = mapped_column(Float, default=0.0)
    network_bytes_sent: Mapped[float] = mapped_column(Float, default=0.0)
    network_bytes_received: Mapped[float] = mapped_column(Float, default=0.0)
    disk_io_bytes: Mapped[float] = mapped_column(Float, default=0.0)
    api_calls_count: Mapped[float] = mapped_column(Float, default=0.0)
    tokens_used: Mapped[float] = mapped_column(Float, default=0.0)
    error_count: Mapped[float] = mapped_column(Float, default=0.0)
    warning_count: Mapped[float] = mapped_column(Float, default=0.0)
    retry_count: Mapped[float] = mapped_column(Float, default=0.0)
    performance_score: Mapped[float] = mapped_column(Float, default=0.0)
    peak_memory_mb: Mapped[float] = mapped_column(Float, default=0.0)


class MetricsHistogram(Base):
    """How many records (and their sum) fall in each bucket of a metric, per brand, UTC day and
    task type (metrics/histogram.py)."""

    __tablename__ = "metrics_histogram"

    brand_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    metric: Mapped[str] = mapped_column(String(40), primary_key=True)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # YYYY-MM-DD (UTC)
    task_type: Mapped[str] = mapped_column(String(100), primary_key=True)
    bucket: Mapped[int] = mapped_column(Integer, primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[float] = mapped_column(Float, default=0.0)
    squares: Mapped[float] = mapped_column(Float, default=0.0)  # the sum of the values' squares


class AlertRule(Base):
    __tablename__ = "alert_rules"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    brand_id: Mapped[int] = mapped_column(Integer)
    brand_name: Mapped[str] = mapped_column(String(200), default="")
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    metric_field: Mapped[str] = mapped_column(String(40))
    condition: Mapped[str] = mapped_column(String(4))
    threshold_value: Mapped[float] = mapped_column(Float)
    task_types: Mapped[list[str]] = mapped_column(JSONType, default=list)
    severity: Mapped[str] = mapped_column(String(10), default="medium")
    is_active: Mapped[bool] = mapped_column(default=True)
    notification_emails: Mapped[list[str]] = mapped_column(JSONType, default=list)
    webhook_url: Mapped[str | None] = mapped_column(String(2000))
    webhook_secret: Mapped[str | None] = mapped_column(String(200))
    cooldown_minutes: Mapped[int] = mapped_column(Integer, default=15)
    trigger_count: Mapped[int] = mapped_column(Integer, default=0)
    last_triggered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_by_id: Mapped[str] = mapped_column(String(100), default="")
    created_by_username: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_alert_rules_brand_name", "brand_id", "name", unique=True),
        Index("ix_alert_rules_brand_active", "brand_id", "is_active"),
        Index("ix_alert_rules_brand_created", "brand_id", "created_at"),
        SQLITE_IDS,
    )


class AlertEvent(Base):
    """One match of a rule against a metrics record (the history)."""

    __tablename__ = "alert_events"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    brand_id: Mapped[int] = mapped_column(Integer)
    rule_id: Mapped[int | None] = mapped_column(ForeignKey("alert_rules.id", ondelete="SET NULL"))
    rule_name: Mapped[str] = mapped_column(String(200))
    severity: Mapped[str] = mapped_column(String(10))
    metric_field: Mapped[str] = mapped_column(String(40))
    condition: Mapped[str] = mapped_column(String(4))
    threshold_value: Mapped[float] = mapped_column(Float)
    value: Mapped[float] = mapped_column(Float)
    base_task: Mapped[int | None] = mapped_column(BigInteger)
    task_id: Mapped[str | None] = mapped_column(String(40))
    notified: Mapped[bool] = mapped_column(default=False)
    triggered_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_alert_events_brand_triggered", "brand_id", "triggered_at"),
        Index("ix_alert_events_rule_triggered", "rule_id", "triggered_at"),
        SQLITE_IDS,
    )


class Notification(Base):
    """A webhook call or an e-mail to send, worked off by the notifier loop (never inline)."""

    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    brand_id: Mapped[int] = mapped_column(Integer)
    alert_event_id: Mapped[int | None] = mapped_column(
        ForeignKey("alert_events.id", ondelete="CASCADE"), index=True
    )
    rule_id: Mapped[int | None] = mapped_column(Integer)
    channel: Mapped[str] = mapped_column(String(10))  # webhook | email
    target: Mapped[str] = mapped_column(String(2000))  # the URL, or the comma list of addresses
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(String(10), default="pending")  # pending | sent | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_notifications_due", "status", "next_attempt_at"),
        # a brand's recent test sends (their rate limit)
        Index("ix_notifications_brand_created", "brand_id", "created_at"),
        SQLITE_IDS,
    )


class Worker(Base):
    """Shared infrastructure (no brand): kept current from worker.heartbeat events. A record
    added by hand belongs to the brand that added it (`brand_id`), seen and changed by it alone,
    until a worker of that name heartbeats and the platform takes it over."""

    __tablename__ = "workers"
    __table_args__ = (SQLITE_IDS,)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    worker_name: Mapped[str] = mapped_column(String(200), unique=True)
    brand_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    queues: Mapped[list[str]] = mapped_column(JSONType, default=list)
    # ",critical,high," so that "consumes queue X" is one LIKE on every backend
    queues_text: Mapped[str] = mapped_column(String(1000), default=",")
    concurrency: Mapped[int] = mapped_column(Integer, default=1)
    is_online: Mapped[bool] = mapped_column(default=False)
    cpu_percent: Mapped[float] = mapped_column(Float, default=0.0)
    memory_percent: Mapped[float] = mapped_column(Float, default=0.0)
    load_average: Mapped[float] = mapped_column(Float, default=0.0)
    active_tasks: Mapped[int] = mapped_column(Integer, default=0)
    # [{id, task_id, brand_id, task_type, started_at, timeout_minutes}] from the last heartbeat
    active_task_list: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    processed_tasks: Mapped[int] = mapped_column(Integer, default=0)
    failed_tasks: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_heartbeat: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
