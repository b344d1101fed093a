"""HTTP layer of /tasks/persistent-jobs/job-states/."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from sqlalchemy import select

from shared.api import Blueprint
from shared.auth import current_principal
from shared.crud import in_session, in_transaction
from shared.listing import Listing, ordering_columns, paginate, timestamp_filters

from ..container import persistence
from ..models import JobState
from . import service
from .schemas import (
    JobStateListArgs,
    JobStatePageSchema,
    JobStateSchema,
    JobStateUpdateSchema,
    JobStateUpsertSchema,
)

blp = Blueprint(
    "job_states",
    __name__,
    url_prefix="/job-states",
    description="The detailed state handlers keep for their jobs.",
)

JOB_STATES = Listing(
    filters={
        "persistent_job": lambda v: JobState.job_id.in_(v),
        "can_retry": lambda v: (
            (JobState.retry_count < JobState.max_retries)
            if v
            else (JobState.retry_count >= JobState.max_retries)
        ),
        **timestamp_filters(JobState.created_at, JobState.updated_at),
    },
    ordering=ordering_columns(JobStateListArgs, JobState),
    tiebreak=JobState.id,
    default_ordering=(("updated_at", True),),
)


@blp.route("/")
class JobStates(MethodView):
    @blp.arguments(JobStateListArgs, location="query")
    @blp.response(200, JobStatePageSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """List job states"""
        stmt = select(JobState).where(JobState.brand_id == current_principal().brand_id)
        return in_session(persistence(), paginate, JOB_STATES.select(stmt, args), args)

    @blp.arguments(JobStateUpsertSchema)
    @blp.response(201, JobStateSchema)
    @blp.alt_response(200, schema=JobStateSchema, description="The job already had a state: updated.")
    def post(self, fields: dict[str, Any]) -> Any:
        """Create or update the state of a job (handlers)"""
        with persistence().uow() as uow:
            principal = current_principal()
            grant = principal.machine
            state, created = service.upsert_state(
                uow, principal.brand_id, fields, grant.claim_int("task") if grant else None
            )
            uow.commit()
            return state, 201 if created else 200


@blp.route("/<int:state_pk>/")
class JobStateById(MethodView):
    @blp.response(200, JobStateSchema)
    def get(self, state_pk: int) -> JobState:
        """Get a job state"""
        return in_session(persistence(), service.get_state, current_principal().brand_id, state_pk)

    @blp.arguments(JobStateUpdateSchema)
    @blp.response(200, JobStateSchema)
    def put(self, fields: dict[str, Any], state_pk: int) -> JobState:
        """Update a job state"""
        return _update(state_pk, fields)

    @blp.arguments(JobStateUpdateSchema)
    @blp.response(200, JobStateSchema)
    def patch(self, fields: dict[str, Any], state_pk: int) -> JobState:
        """Update some fields of a job state"""
        return _update(state_pk, fields)


def _update(state_pk: int, fields: dict[str, Any]) -> JobState:
    return in_transaction(persistence(), service.update_state, current_principal().brand_id, state_pk, fields)
