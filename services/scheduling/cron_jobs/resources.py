"""HTTP layer of /tasks/scheduled/cron-jobs/: parse, call the service layer, serialize."""

from __future__ import annotations

from functools import partial
from typing import Any

from flask.views import MethodView
from sqlalchemy import select

from shared.api import Blueprint
from shared.auth import current_principal
from shared.crud import in_session, in_transaction
from shared.listing import Listing, column_filters, ordering_columns, paginate, timestamp_filters

from ..container import scheduling
from ..models import CronJob
from ..periodic_tasks.resources import current_caller
from ..periodic_tasks.schemas import RunListArgs, RunNowSchema, RunPageSchema
from ..run_views import run_history
from . import service
from .schemas import (
    CronJobCreateSchema,
    CronJobListArgs,
    CronJobPageSchema,
    CronJobSchema,
    CronJobUpdateSchema,
)

blp = Blueprint(
    "cron_jobs",
    __name__,
    url_prefix="/cron-jobs",
    description="Named recurring jobs on a frequency preset or a custom expression.",
)

CRON_JOBS = Listing(
    filters={
        **column_filters(CronJobListArgs, CronJob),
        **timestamp_filters(CronJob.created_at, CronJob.updated_at),
    },
    ordering=ordering_columns(CronJobListArgs, CronJob, last_execution_at=CronJob.last_run_at),
    tiebreak=CronJob.id,
    search=(CronJob.name, CronJob.description, CronJob.task_type),
)


@blp.route("/")
class CronJobs(MethodView):
    @blp.arguments(CronJobListArgs, location="query")
    @blp.response(200, CronJobPageSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """List cron jobs"""
        stmt = select(CronJob).where(CronJob.brand_id == current_principal().brand_id)
        return in_session(scheduling(), paginate, CRON_JOBS.select(stmt, args), args)

    @blp.arguments(CronJobCreateSchema)
    @blp.response(201, CronJobSchema)
    def post(self, fields: dict[str, Any]) -> Any:
        """Create a cron job"""
        container = scheduling()
        return in_transaction(
            container, partial(service.create_cron_job, container), current_principal(), fields
        )


@blp.route("/<int:pk>/")
class CronJobById(MethodView):
    @blp.response(200, CronJobSchema)
    def get(self, pk: int) -> Any:
        """Get a cron job"""
        return in_session(scheduling(), service.get_cron_job, current_principal().brand_id, pk)

    @blp.arguments(CronJobUpdateSchema)
    @blp.response(200, CronJobSchema)
    def put(self, fields: dict[str, Any], pk: int) -> Any:
        """Update a cron job"""
        return _update(pk, fields)

    @blp.arguments(CronJobUpdateSchema)
    @blp.response(200, CronJobSchema)
    def patch(self, fields: dict[str, Any], pk: int) -> Any:
        """Update some fields of a cron job"""
        return _update(pk, fields)

    @blp.response(204)
    def delete(self, pk: int) -> None:
        """Delete a cron job"""
        in_transaction(scheduling(), service.delete_cron_job, current_principal().brand_id, pk)


def _update(pk: int, fields: dict[str, Any]) -> Any:
    container = scheduling()
    update = partial(service.update_cron_job, container)
    return in_transaction(container, update, current_principal().brand_id, pk, fields)


@blp.route("/<int:pk>/execute/")
class Execute(MethodView):
    @blp.answers(RunNowSchema)
    def post(self, pk: int) -> Any:
        """Run the job now, without moving its schedule; answers with core's task"""
        return service.execute(scheduling(), current_principal(), pk, current_caller())


@blp.route("/<int:pk>/runs/")
class Runs(MethodView):
    @blp.arguments(RunListArgs, location="query")
    @blp.response(200, RunPageSchema)
    def get(self, args: dict[str, Any], pk: int) -> dict[str, Any]:
        """Run history of the job"""
        return in_session(
            scheduling(), run_history, service.get_cron_job, current_principal().brand_id, pk, args
        )
