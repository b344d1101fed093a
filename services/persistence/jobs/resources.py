"""HTTP layer of /tasks/persistent-jobs/persistent-jobs/: parse, call the service layer, dump."""

from __future__ import annotations

from typing import Any

from flask import request
from flask.views import MethodView

from shared.api import Blueprint
from shared.auth import current_principal, machine_target
from shared.core_client import Caller
from shared.crud import in_session, in_transaction
from shared.listing import paginate

from ..container import persistence
from . import queries, runs, service
from .schemas import (
    AutoResumeResultSchema,
    AutoResumeSchema,
    CleanupResultSchema,
    CleanupSchema,
    JobCreateSchema,
    JobDetailSchema,
    JobListArgs,
    JobPageSchema,
    JobSchema,
    JobStatsSchema,
    JobUpdateSchema,
    PauseResultSchema,
    RestartResultSchema,
    RestartSchema,
    ResumableArgs,
    ResumableListSchema,
    ResumeResultSchema,
    ResumeSchema,
    StartRunResultSchema,
    StartRunSchema,
    StatsArgs,
    ValidateConfigResultSchema,
    ValidateConfigSchema,
)

blp = Blueprint(
    "persistent_jobs",
    __name__,
    url_prefix="/persistent-jobs",
    description="Persistent jobs: long tasks that checkpoint, pause, resume and restart.",
)


@blp.route("/")
class Jobs(MethodView):
    @blp.arguments(JobListArgs, location="query")
    @blp.response(200, JobPageSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """List persistent jobs"""
        return in_session(persistence(), paginate, queries.job_list(current_principal().brand_id, args), args)

    @blp.error(
        503, "core, asked about a task this service has not heard of, did not answer (SERVICE_UNAVAILABLE)."
    )
    @blp.arguments(JobCreateSchema)
    @blp.response(201, JobSchema)
    def post(self, fields: dict[str, Any]) -> Any:
        """Make an existing task persistent"""
        container = persistence()
        caller = Caller.of(request.headers)
        return in_transaction(
            container, service.create_job, container.core, caller, current_principal().brand_id, fields
        )


@blp.route("/<int:job_pk>/")
class JobById(MethodView):
    @blp.response(200, JobDetailSchema)
    def get(self, job_pk: int) -> Any:
        """Get a job with its newest checkpoints and its state"""
        with persistence().session_factory() as session:
            job = service.get_job(session, current_principal().brand_id, job_pk)
            return _detail(session, job)

    @blp.arguments(JobUpdateSchema)
    @blp.response(200, JobDetailSchema)
    def put(self, fields: dict[str, Any], job_pk: int) -> dict[str, Any]:
        """Update a job's writable fields"""
        return _update(job_pk, fields)

    @blp.arguments(JobUpdateSchema)
    @blp.response(200, JobDetailSchema)
    def patch(self, fields: dict[str, Any], job_pk: int) -> dict[str, Any]:
        """Update some of a job's writable fields"""
        return _update(job_pk, fields)

    @blp.error(409, "A running job cannot be deleted (INVALID_JOB_STATE).")
    @blp.response(204)
    def delete(self, job_pk: int) -> None:
        """Delete a job with its checkpoints and state (not while it runs)"""
        in_transaction(persistence(), service.delete_job, current_principal().brand_id, job_pk)


def _detail(session: Any, job: Any) -> Any:
    """Load what the detail adds while the session is open (the dump happens after it closes)."""
    job.newest_checkpoints = queries.newest_checkpoints(session, job)
    if job.state is not None:
        _ = job.state.job  # the state's dump names its job
    return job


def _update(job_pk: int, fields: dict[str, Any]) -> Any:
    with persistence().uow() as uow:
        job = _detail(uow.session, service.update_job(uow, current_principal().brand_id, job_pk, fields))
        uow.commit()
        return job


@blp.route("/<int:job_pk>/resume/")
class JobResume(MethodView):
    @blp.error(
        409, "Not resumable (JOB_NOT_RESUMABLE) or its checkpoint fails its checksum (CHECKPOINT_CORRUPTED)."
    )
    @blp.arguments(ResumeSchema, required=False)
    @blp.response(200, ResumeResultSchema)
    def post(self, options: dict[str, Any], job_pk: int) -> dict[str, Any]:
        """Resume a stopped job from a checkpoint (default: its newest recovery point)"""
        return in_transaction(
            persistence(), service.resume_job, current_principal().brand_id, job_pk, options or {}
        )


@blp.route("/<int:job_pk>/pause/")
class JobPause(MethodView):
    @blp.error(409, "The job is not running (INVALID_JOB_STATE).")
    @blp.response(200, PauseResultSchema)
    def post(self, job_pk: int) -> dict[str, Any]:
        """Ask a running job to stop at its next checkpoint"""
        return in_transaction(persistence(), service.pause_job, current_principal().brand_id, job_pk)


@blp.route("/<int:job_pk>/restart/")
class JobRestart(MethodView):
    @blp.error(
        409,
        "The job is still running (INVALID_JOB_STATE) or its checkpoint is corrupted (CHECKPOINT_CORRUPTED).",
    )
    @blp.arguments(RestartSchema, required=False)
    @blp.response(200, RestartResultSchema)
    def post(self, options: dict[str, Any], job_pk: int) -> dict[str, Any]:
        """Run a stopped job again from its start or from a step"""
        options = options or RestartSchema().load({})
        return in_transaction(
            persistence(), service.restart_job, current_principal().brand_id, job_pk, options
        )


@blp.route("/resumable/")
class Resumable(MethodView):
    @blp.answers(ResumableListSchema)
    @blp.arguments(ResumableArgs, location="query")
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """Jobs that can continue from a checkpoint, best candidates first (at most 100)"""
        return in_session(persistence(), queries.resumable, current_principal().brand_id, args)


@blp.route("/auto-resume/")
class AutoResume(MethodView):
    @blp.answers(AutoResumeResultSchema)
    @blp.arguments(AutoResumeSchema, required=False)
    def post(self, options: dict[str, Any]) -> dict[str, Any]:
        """Resume the best failed or interrupted jobs now"""
        container = persistence()
        return service.auto_resume(
            container.uow,
            current_principal().brand_id,
            options or AutoResumeSchema().load({}),
            container.auto_resume_max_per_job,
        )


@blp.route("/cleanup-old/")
class CleanupOld(MethodView):
    @blp.answers(CleanupResultSchema)
    @blp.arguments(CleanupSchema, required=False)
    def post(self, options: dict[str, Any]) -> dict[str, Any]:
        """Delete old finished jobs and their checkpoints (admin; dry_run only counts)"""
        options = options or CleanupSchema().load({})
        return in_transaction(persistence(), service.cleanup_old, current_principal().brand_id, options)


@blp.route("/validate-config/")
class ValidateConfig(MethodView):
    @blp.answers(ValidateConfigResultSchema)
    @blp.arguments(ValidateConfigSchema)
    def post(self, options: dict[str, Any]) -> dict[str, Any]:
        """Check a job's checkpointing plan and estimate its checkpoints and storage"""
        return service.validate_config(options)


@blp.route("/stats/")
class Stats(MethodView):
    @blp.answers(JobStatsSchema)
    @blp.arguments(StatsArgs, location="query")
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """Job, resume, checkpoint and failure figures over the last `days`"""
        return in_session(
            persistence(), queries.stats, current_principal().brand_id, args["days"], args["include_trends"]
        )


@blp.route("/for-task/")
class StartRun(MethodView):
    @blp.error(409, "The checkpoint to resume from fails its checksum (CHECKPOINT_CORRUPTED).")
    @blp.arguments(StartRunSchema)
    @blp.response(200, StartRunResultSchema)
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Worker: a handler starts; get-or-create its job, what to do, where to continue from

        Only with the `attempt` grant core put in the work message, for that task and attempt
        (docs/security.md): no user token, and no other task's id."""
        machine_target(task=body["base_task"], attempt=body["attempt"])
        return runs.start_run(persistence().uow, current_principal().brand_id, body)
