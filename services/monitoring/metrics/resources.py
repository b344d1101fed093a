"""HTTP layer of /tasks/monitoring/metrics/: parse, call the service layer or a query, serialize."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from sqlalchemy import select

from shared.api import Blueprint
from shared.auth import current_principal
from shared.crud import in_session, in_transaction
from shared.listing import Listing, column_filters, ordering_columns, paginate, timestamp_filters

from ..container import monitoring
from ..models import MetricsRecord as M
from . import analytics, service
from .schemas import (
    AnomaliesSchema,
    AnomalyArgs,
    DashboardArgs,
    DashboardSchema,
    MetricsCreateSchema,
    MetricsListArgs,
    MetricsPageSchema,
    MetricsSchema,
    MetricsUpdateSchema,
    PerformanceArgs,
    PerformanceByTypeSchema,
    RecommendationArgs,
    RecommendationsSchema,
    TrendArgs,
    TrendsSchema,
)

blp = Blueprint(
    "metrics",
    __name__,
    url_prefix="/metrics",
    description="Execution metrics of tasks, and analytics over them.",
)

COLUMNS = ordering_columns(MetricsListArgs, M)
RECORDS = Listing(
    filters={
        **column_filters(MetricsListArgs, M),
        "base_task": lambda v: M.base_task == v,
        **timestamp_filters(M.created_at, M.updated_at),
    },
    ordering=COLUMNS,
    tiebreak=M.id,
    search=(M.task_id, M.task_type, M.worker_name),
    ranges=COLUMNS,
)


@blp.route("/")
class Metrics(MethodView):
    @blp.arguments(MetricsListArgs, location="query")
    @blp.response(200, MetricsPageSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """List metrics records"""
        stmt = select(M).where(M.brand_id == current_principal().brand_id)
        return in_session(monitoring(), paginate, RECORDS.select(stmt, args), args)

    @blp.arguments(MetricsCreateSchema)
    @blp.response(201, MetricsSchema)
    def post(self, fields: dict[str, Any]) -> M:
        """Record the metrics of a task (one record per task)"""
        record = in_transaction(monitoring(), service.create_record, current_principal(), fields)
        return _reloaded(record.id)


def _reloaded(pk: int) -> M:
    return in_session(monitoring(), service.get_record, current_principal().brand_id, pk)


@blp.route("/<int:pk>/")
class MetricsById(MethodView):
    @blp.response(200, MetricsSchema)
    def get(self, pk: int) -> M:
        """Get a metrics record"""
        return _reloaded(pk)

    @blp.arguments(MetricsUpdateSchema)
    @blp.response(200, MetricsSchema)
    def put(self, fields: dict[str, Any], pk: int) -> M:
        """Correct a metrics record's figures"""
        return _update(pk, fields)

    @blp.arguments(MetricsUpdateSchema)
    @blp.response(200, MetricsSchema)
    def patch(self, fields: dict[str, Any], pk: int) -> M:
        """Correct some of a metrics record's figures"""
        return _update(pk, fields)

    @blp.response(204)
    def delete(self, pk: int) -> None:
        """Delete a metrics record"""
        in_transaction(monitoring(), service.delete_record, current_principal().brand_id, pk)


def _update(pk: int, fields: dict[str, Any]) -> M:
    in_transaction(monitoring(), service.update_record, current_principal().brand_id, pk, fields)
    return _reloaded(pk)


@blp.route("/dashboard/")
class Dashboard(MethodView):
    @blp.answers(DashboardSchema)
    @blp.arguments(DashboardArgs, location="query")
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """Summary, daily trends, most expensive types and speed per priority"""
        return in_session(
            monitoring(),
            analytics.dashboard,
            current_principal().brand_id,
            args["days"],
            args.get("task_type"),
        )


@blp.route("/trends/")
class Trends(MethodView):
    @blp.answers(TrendsSchema)
    @blp.arguments(TrendArgs, location="query")
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """Daily values of chosen metrics, with the direction they take"""
        return in_session(
            monitoring(),
            analytics.trends,
            current_principal().brand_id,
            args["days"],
            args.get("task_type"),
            args["metric"],
        )


@blp.route("/performance-by-type/")
class PerformanceByType(MethodView):
    @blp.answers(PerformanceByTypeSchema)
    @blp.arguments(PerformanceArgs, location="query")
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """Per task type: volume, speed (with a true p95), memory, cost, success rate, trend"""
        return in_session(
            monitoring(),
            analytics.performance_by_type,
            current_principal().brand_id,
            args["days"],
            args["min_samples"],
        )


@blp.route("/anomalies/")
class Anomalies(MethodView):
    @blp.answers(AnomaliesSchema)
    @blp.arguments(AnomalyArgs, location="query")
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """Runs far from their task type's median (robust z-score over median and MAD)"""
        return in_session(
            monitoring(),
            analytics.anomalies,
            current_principal().brand_id,
            args["days"],
            args["metric"],
            args["sensitivity"],
        )


@blp.route("/recommendations/")
class Recommendations(MethodView):
    @blp.answers(RecommendationsSchema)
    @blp.arguments(RecommendationArgs, location="query")
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """Advice derived from measured queue waits, error rates, costs and memory"""
        return in_session(monitoring(), analytics.recommendations, current_principal().brand_id, args["days"])
