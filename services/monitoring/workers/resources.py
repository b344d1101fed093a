"""HTTP layer of /tasks/monitoring/workers/. Workers are shared infrastructure: any authenticated
caller reads them, no brand changes them; what a worker shows of tasks is limited to the
caller's brand. A manual record belongs to the brand that added it."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from sqlalchemy import or_, select

from shared.api import Blueprint
from shared.auth import current_principal
from shared.listing import apply_filters, apply_ordering, paginate, search_clause, timestamp_filters

from ..container import monitoring
from ..models import Worker
from . import queries, service
from .schemas import (
    WorkerDetailSchema,
    WorkerListArgs,
    WorkerPageSchema,
    WorkerSchema,
    WorkersOverviewSchema,
    WorkerUpdateSchema,
    WorkerWriteSchema,
)

blp = Blueprint("workers", __name__, url_prefix="/workers", description="Workers, from their heartbeats.")

COLUMNS = {
    name: getattr(Worker, name)
    for name in (
        "worker_name", "last_heartbeat", "cpu_percent", "memory_percent", "active_tasks", "load_average", "created_at"
    )
}  # fmt: skip


def _filters() -> dict[str, Any]:
    offline_seconds = monitoring().offline_seconds
    return {
        "is_online": lambda v: (service.online_clause if v else service.offline_clause)(offline_seconds),
        "queue_name": lambda v: or_(*(Worker.queues_text.contains(f",{q},", autoescape=True) for q in v)),
        **timestamp_filters(Worker.created_at, Worker.updated_at),
    }


@blp.route("/")
class Workers(MethodView):
    @blp.arguments(WorkerListArgs, location="query")
    @blp.response(200, WorkerPageSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """List workers"""
        stmt = apply_filters(
            select(Worker).where(service.visible_to(current_principal().brand_id)), args, _filters(), COLUMNS
        )
        if args.get("search"):
            stmt = stmt.where(search_clause(args["search"], Worker.worker_name))
        stmt = apply_ordering(stmt, args.get("ordering"), COLUMNS, [("worker_name", False)], Worker.id)
        with monitoring().session_factory() as session:
            return paginate(session, stmt, args)

    @blp.arguments(WorkerWriteSchema)
    @blp.response(201, WorkerSchema)
    def post(self, fields: dict[str, Any]) -> Worker:
        """Add a worker record by hand (heartbeats normally do it)"""
        with monitoring().uow() as uow:
            worker = service.create_worker(uow, current_principal().brand_id, fields)
            uow.commit()
            return worker


@blp.route("/overview/")
class WorkersOverview(MethodView):
    @blp.answers(WorkersOverviewSchema)
    def get(self) -> dict[str, Any]:
        """Workers online, per queue, and the fleet's health"""
        container = monitoring()
        with container.session_factory() as session:
            return queries.overview(session, container.offline_seconds, current_principal().brand_id)


@blp.route("/<int:pk>/")
class WorkerById(MethodView):
    @blp.response(200, WorkerDetailSchema)
    def get(self, pk: int) -> Worker:
        """A worker, with its current tasks and recent performance for the caller's brand"""
        brand_id = current_principal().brand_id
        with monitoring().session_factory() as session:
            worker = service.get_worker(session, pk, brand_id)
            worker.current_tasks = queries.current_tasks(session, worker, brand_id)  # type: ignore[attr-defined]
            worker.recent_performance = queries.recent_performance(  # type: ignore[attr-defined]
                session, worker.worker_name, brand_id
            )
            return worker

    @blp.arguments(WorkerUpdateSchema)
    @blp.response(200, WorkerSchema)
    def put(self, fields: dict[str, Any], pk: int) -> Worker:
        """Change a worker record"""
        return _update(pk, fields)

    @blp.arguments(WorkerUpdateSchema)
    @blp.response(200, WorkerSchema)
    def patch(self, fields: dict[str, Any], pk: int) -> Worker:
        """Change some fields of a worker record"""
        return _update(pk, fields)

    @blp.response(204)
    def delete(self, pk: int) -> None:
        """Delete a manual worker record of the brand (admin)"""
        with monitoring().uow() as uow:
            service.delete_worker(uow, current_principal().brand_id, pk)
            uow.commit()


def _update(pk: int, fields: dict[str, Any]) -> Worker:
    with monitoring().uow() as uow:
        worker = service.update_worker(uow, current_principal().brand_id, pk, fields)
        uow.commit()
        return worker
