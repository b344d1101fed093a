"""HTTP layer of /tasks/monitoring/metrics/: parse, call the service layer or a query, serialize."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from sqlalchemy import select

from shared.api import Blueprint
from shared.auth import current_principal
from shared.listing import (
    apply_filters,
    apply_ordering,
    column_filters,
    paginate,
    search_clause,
    timestamp_filters,
)

from ..container import monitoring
from ..models import MetricsRecord as M
from . import analytics, service
from .fields import NUMERIC
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

FILTERS: dict[str, Any] = {
    **column_filters(MetricsListArgs, M),
    "base_task": lambda v: M.base_task == v,
    **timestamp_filters(M.created_at, M.updated_at),
}
COLUMNS = {name: getattr(M, name) for name in (*NUMERIC, "created_at", "updated_at")}


@blp.route("/")
class Metrics(MethodView):
    @blp.arguments(MetricsListArgs, location="query")
    @blp.response(200, MetricsPageSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """List metrics records"""
        stmt = apply_filters(
            select(M).where(M.brand_id == current_principal().brand_id), args, FILTERS, COLUMNS
        )
        if args.get("search"):
            stmt = stmt.where(search_clause(args["search"], M.task_id, M.task_type, M.worker_name))
        stmt = apply_ordering(stmt, args.get("ordering"), COLUMNS, [("created_at", True)], M.id)
        with monitoring().session_factory() as session:
            return paginate(session, stmt, args)

    @blp.arguments(MetricsCreateSchema)
    @blp.response(201, MetricsSchema)
    def post(self, fields: dict[str, Any]) -> M:
        """Record the metrics of a task (one record per task)"""
        with monitoring().uow() as uow:
            record = service.create_record(uow, current_principal(), fields)
            uow.commit()
            return _reloaded(record.id)


def _reloaded(pk: int) -> M:
    with monitoring().session_factory() as session:
        return service.get_record(session, current_principal().brand_id, pk)


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
        with monitoring().uow() as uow:
            service.delete_record(uow, current_principal().brand_id, pk)
            uow.commit()


def _update(pk: int, fields: dict[str, Any]) -> M:
    with monitoring().uow() as uow:
        service.update_record(uow, current_principal().brand_id, pk, fields)
        uow.commit()
    return _reloaded(pk)


@blp.route("/dashboard/")
class Dashboard(MethodView):
    @blp.answers(DashboardSchema)
    @blp.arguments(DashboardArgs, location="query")
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """Summary, daily trends, most expensive types and speed per priority"""
        with monitoring().session_factory() as session:
            return analytics.dashboard(
                session, current_principal().brand_id, args["days"], args.get("task_type")
            )


@blp.route("/trends/")
class Trends(MethodView):
    @blp.answers(TrendsSchema)
    @blp.arguments(TrendArgs, location="query")
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """Daily values of chosen metrics, with the direction they take"""
        with monitoring().session_factory() as session:
            return analytics.trends(
                session, current_principal().brand_id, args["days"], args.get("task_type"), args["metric"]
            )


@blp.route("/performance-by-type/")
class PerformanceByType(MethodView):
    @blp.answers(PerformanceByTypeSchema)
    @blp.arguments(PerformanceArgs, location="query")
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """Per task type: volume, speed (with a true p95), memory, cost, success rate, trend"""
        with monitoring().session_factory() as session:
            return analytics.performance_by_type(
                session, current_principal().brand_id, args["days"], args["min_samples"]
            )


@blp.route("/anomalies/")
class Anomalies(MethodView):
    @blp.answers(AnomaliesSchema)
    @blp.arguments(AnomalyArgs, location="query")
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """Runs far from their task type's median (robust z-score over median and MAD)"""
        with monitoring().session_factory() as session:
            return analytics.anomalies(
                session, current_principal().brand_id, args["days"], args["metric"], args["sensitivity"]
            )


@blp.route("/recommendations/")
class Recommendations(MethodView):
    @blp.answers(RecommendationsSchema)
    @blp.arguments(RecommendationArgs, location="query")
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """Advice derived from measured queue waits, error rates, costs and memory"""
        with monitoring().session_factory() as session:
            return analytics.recommendations(session, current_principal().brand_id, args["days"])
