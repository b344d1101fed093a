"""Metrics request and response schemas (docs/api.md §2)."""

from __future__ import annotations

import marshmallow as ma

from shared.api import ReadSchema, Schema, Timestamp
from shared.listing import CommaList, ListArgs, Ordering, QueryArgs, page_schema

from ..models import MetricsRecord
from .fields import INT_FIELDS, MEASURED, NUMERIC, RANGES


def _number(name: str) -> type[ma.fields.Field]:
    return ma.fields.Integer if name in INT_FIELDS else ma.fields.Float


def _measured_fields() -> dict[str, ma.fields.Field]:
    return {name: _number(name)(validate=ma.validate.Range(*RANGES[name])) for name in MEASURED}


_worker_name = ma.fields.String(allow_none=True, validate=ma.validate.Length(max=200))

MetricsUpdateSchema = Schema.from_dict(
    {**_measured_fields(), "worker_name": _worker_name}, name="MetricsUpdate"
)
MetricsCreateSchema = Schema.from_dict(
    {"base_task": ma.fields.Integer(required=True), **_measured_fields(), "worker_name": _worker_name},
    name="MetricsCreate",
)


class _MetricsRead(ReadSchema):
    id = ma.fields.Integer()
    base_task = ma.fields.Method("summary")

    def summary(self, record: MetricsRecord) -> dict:
        return {
            "id": record.base_task,
            "task_id": record.task_id,
            "task_type": record.task_type,
            "status": record.view.status if record.view is not None else None,
        }


MetricsSchema = _MetricsRead.from_dict(
    {
        **{name: _number(name)() for name in MEASURED},
        "worker_name": ma.fields.String(allow_none=True),
        "performance_score": ma.fields.Float(),
        "created_at": Timestamp(),
        "updated_at": Timestamp(),
    },
    name="Metrics",
)
MetricsPageSchema = page_schema(MetricsSchema, "MetricsPage")
ORDERING_FIELDS = (*NUMERIC, "created_at", "updated_at")


class MetricsListArgs(ListArgs):
    range_filters = {name: _number(name) for name in NUMERIC}
    base_task = ma.fields.Integer()
    task_type = CommaList()
    worker_name = CommaList()
    ordering = Ordering(ORDERING_FIELDS)


class DashboardArgs(QueryArgs):
    days = ma.fields.Integer(load_default=7, validate=ma.validate.OneOf([7, 30, 90]))
    task_type = ma.fields.String(validate=ma.validate.Length(min=1, max=100))


class TrendArgs(DashboardArgs):
    days = ma.fields.Integer(load_default=30, validate=ma.validate.Range(1, 365))
    metric = CommaList(NUMERIC, load_default=["execution_time_ms", "memory_usage_mb", "cost_usd"])


class PerformanceArgs(QueryArgs):
    days = ma.fields.Integer(load_default=30, validate=ma.validate.Range(1, 365))
    min_samples = ma.fields.Integer(load_default=1, validate=ma.validate.Range(1, 1_000_000))


class AnomalyArgs(QueryArgs):
    sensitivity = ma.fields.String(
        load_default="medium", validate=ma.validate.OneOf(["low", "medium", "high"])
    )
    days = ma.fields.Integer(load_default=7, validate=ma.validate.Range(1, 365))
    metric = ma.fields.String(load_default="execution_time_ms", validate=ma.validate.OneOf(NUMERIC))


class RecommendationArgs(QueryArgs):
    days = ma.fields.Integer(load_default=7, validate=ma.validate.Range(1, 365))


# ---- responses of the analytics views (documentation: the views build these bodies)

Num = ma.fields.Float
Int = ma.fields.Integer


class _DashboardSummary(ReadSchema):
    total_tasks = Int()
    avg_execution_time_ms = Num()
    avg_memory_usage_mb = Num()
    avg_cpu_usage_percent = Num()
    total_cost_usd = Num()
    total_tokens_used = Int()
    total_api_calls = Int()
    error_rate_percent = Num()


class _DashboardTrends(ReadSchema):
    execution_time = ma.fields.List(ma.fields.Dict(), metadata={"description": "[{date, avg_ms}]"})
    cost = ma.fields.List(ma.fields.Dict(), metadata={"description": "[{date, total_usd}]"})
    memory_usage = ma.fields.List(ma.fields.Dict(), metadata={"description": "[{date, avg_mb}]"})


class _ExpensiveType(ReadSchema):
    task_type = ma.fields.String()
    total_cost_usd = Num()
    avg_cost_per_task = Num()
    task_count = Int()


class _PrioritySpeed(ReadSchema):
    avg_ms = Num()
    count = Int()


class DashboardSchema(ReadSchema):
    period = ma.fields.String(metadata={"example": "last_7_days"})
    summary = ma.fields.Nested(_DashboardSummary)
    trends = ma.fields.Nested(_DashboardTrends)
    top_expensive_tasks = ma.fields.List(ma.fields.Nested(_ExpensiveType))
    performance_by_priority = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Nested(_PrioritySpeed))


class _DatedValue(ReadSchema):
    date = ma.fields.String()
    value = Num()


class _MetricTrend(ReadSchema):
    trend = ma.fields.String(metadata={"description": "increasing, decreasing or stable"})
    change_percent = Num(allow_none=True)
    data_points = ma.fields.List(ma.fields.Nested(_DatedValue))


class TrendsSchema(ReadSchema):
    period = Int(metadata={"description": "Days in the window."})
    metrics = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Nested(_MetricTrend))


class _TypePerformance(ReadSchema):
    total_executions = Int()
    avg_execution_time_ms = Num()
    min_execution_time_ms = Num()
    max_execution_time_ms = Num()
    p95_execution_time_ms = Num()
    avg_memory_usage_mb = Num()
    avg_cost_usd = Num()
    success_rate = Num()
    trend = ma.fields.String()


class PerformanceByTypeSchema(ReadSchema):
    task_types = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Nested(_TypePerformance))


class RecommendationSchema(ReadSchema):
    type = ma.fields.String()
    priority = ma.fields.String()
    description = ma.fields.String()
    impact = ma.fields.String()
    implementation = ma.fields.String()


class _Anomaly(ReadSchema):
    task_id = ma.fields.Raw(metadata={"description": "core's task id"})
    task_type = ma.fields.String()
    metric = ma.fields.String()
    value = Num()
    expected_range = ma.fields.List(Num())
    severity = ma.fields.String()
    detected_at = ma.fields.String(allow_none=True)
    description = ma.fields.String()


class AnomaliesSchema(ReadSchema):
    anomalies_detected = Int()
    anomalies = ma.fields.List(ma.fields.Nested(_Anomaly))
    recommendations = ma.fields.List(ma.fields.Nested(RecommendationSchema))


class RecommendationsSchema(ReadSchema):
    recommendations = ma.fields.List(ma.fields.Nested(RecommendationSchema))
