"""HTTP layer of /tasks/monitoring/workers/. Workers are shared infrastructure: any authenticated
caller reads them, no brand changes them; what a worker shows of tasks is limited to the
caller's brand. A manual record belongs to the brand that added it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from flask.views import MethodView
from sqlalchemy import or_, select

from shared.api import Blueprint
from shared.auth import current_principal
from shared.crud import in_session, in_transaction
from shared.listing import Listing, ordering_columns, paginate, timestamp_filters

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

COLUMNS = ordering_columns(WorkerListArgs, Worker)


WORKERS = Listing(
    filters={
        "queue_name": lambda v: or_(*(Worker.queues_text.contains(f",{q},", autoescape=True) for q in v)),
        **timestamp_filters(Worker.created_at, Worker.updated_at),
    },
    ordering=COLUMNS,
    tiebreak=Worker.id,
    default_ordering=(("worker_name", False),),
    search=(Worker.worker_name,),
    ranges=COLUMNS,
)


def _listing() -> Listing:
    """WORKERS, with `is_online` measured against this container's offline allowance."""
    offline_seconds = monitoring().offline_seconds
    online = {
        "is_online": lambda v: (service.online_clause if v else service.offline_clause)(offline_seconds)
    }
    return replace(WORKERS, filters={**online, **WORKERS.filters})


@blp.route("/")
class Workers(MethodView):
    @blp.arguments(WorkerListArgs, location="query")
    @blp.response(200, WorkerPageSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """List workers"""
        stmt = select(Worker).where(service.visible_to(current_principal().brand_id))
        return in_session(monitoring(), paginate, _listing().select(stmt, args), args)

    @blp.arguments(WorkerWriteSchema)
    @blp.response(201, WorkerSchema)
    def post(self, fields: dict[str, Any]) -> Worker:
        """Add a worker record by hand (heartbeats normally do it)"""
        return in_transaction(monitoring(), service.create_worker, current_principal().brand_id, fields)


@blp.route("/overview/")
class WorkersOverview(MethodView):
    @blp.answers(WorkersOverviewSchema)
    def get(self) -> dict[str, Any]:
        """Workers online, per queue, and the fleet's health"""
        container = monitoring()
        return in_session(
            container, queries.overview, container.offline_seconds, current_principal().brand_id
        )


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
        in_transaction(monitoring(), service.delete_worker, current_principal().brand_id, pk)


def _update(pk: int, fields: dict[str, Any]) -> Worker:
    return in_transaction(monitoring(), service.update_worker, current_principal().brand_id, pk, fields)
