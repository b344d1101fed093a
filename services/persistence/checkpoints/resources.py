"""HTTP layer of /tasks/persistent-jobs/checkpoints/."""

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

from ..container import persistence
from ..models import Checkpoint
from . import service
from .schemas import (
    LARGE_DATA_BYTES,
    CheckpointCreateSchema,
    CheckpointListArgs,
    CheckpointPageSchema,
    CheckpointSchema,
    CheckpointUpdateSchema,
    OptimizeStorageResultSchema,
    OptimizeStorageSchema,
    SavedCheckpointSchema,
)

blp = Blueprint(
    "checkpoints",
    __name__,
    url_prefix="/checkpoints",
    description="Checkpoints: the saved steps a job resumes from.",
)

FILTERS: dict[str, Any] = {
    **column_filters(CheckpointListArgs, Checkpoint),
    "persistent_job": lambda v: Checkpoint.job_id.in_(v),
    "has_large_data": lambda v: (
        (Checkpoint.data_size_bytes > LARGE_DATA_BYTES)
        if v
        else (Checkpoint.data_size_bytes <= LARGE_DATA_BYTES)
    ),
    **timestamp_filters(Checkpoint.created_at, Checkpoint.updated_at),
}
RANGES = {"data_size_bytes": Checkpoint.data_size_bytes}
ORDERING = {
    "created_at": Checkpoint.created_at,
    "data_size_bytes": Checkpoint.data_size_bytes,
    "step_name": Checkpoint.step_name,
}


@blp.route("/")
class Checkpoints(MethodView):
    @blp.arguments(CheckpointListArgs, location="query")
    @blp.response(200, CheckpointPageSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """List checkpoints"""
        stmt = apply_filters(
            select(Checkpoint).where(Checkpoint.brand_id == current_principal().brand_id),
            args,
            FILTERS,
            RANGES,
        )
        if args.get("search"):
            stmt = stmt.where(search_clause(args["search"], Checkpoint.step_name))
        stmt = apply_ordering(stmt, args.get("ordering"), ORDERING, [("created_at", True)], Checkpoint.id)
        with persistence().session_factory() as session:
            return paginate(session, stmt, args)

    @blp.arguments(CheckpointCreateSchema)
    @blp.response(201, SavedCheckpointSchema)
    def post(self, fields: dict[str, Any]) -> Checkpoint:
        """Save a checkpoint; the answer's `control` tells the handler to continue, pause or cancel"""
        with persistence().uow() as uow:
            principal = current_principal()
            grant = principal.machine
            checkpoint, control = service.save_checkpoint(
                uow, principal.brand_id, fields, grant.claim_int("task") if grant else None
            )
            uow.commit()
            checkpoint.control = control  # type: ignore[attr-defined]  # shown once, not stored
            return checkpoint


@blp.route("/<int:checkpoint_pk>/")
class CheckpointById(MethodView):
    @blp.response(200, CheckpointSchema)
    def get(self, checkpoint_pk: int) -> Checkpoint:
        """Get a checkpoint (its data decompressed)"""
        with persistence().session_factory() as session:
            return service.get_checkpoint(session, current_principal().brand_id, checkpoint_pk)

    @blp.arguments(CheckpointUpdateSchema)
    @blp.response(200, CheckpointSchema)
    def put(self, fields: dict[str, Any], checkpoint_pk: int) -> Checkpoint:
        """Update a checkpoint"""
        return _update(checkpoint_pk, fields)

    @blp.arguments(CheckpointUpdateSchema)
    @blp.response(200, CheckpointSchema)
    def patch(self, fields: dict[str, Any], checkpoint_pk: int) -> Checkpoint:
        """Update some fields of a checkpoint"""
        return _update(checkpoint_pk, fields)

    @blp.response(204)
    def delete(self, checkpoint_pk: int) -> None:
        """Delete a checkpoint"""
        with persistence().uow() as uow:
            service.delete_checkpoint(uow, current_principal().brand_id, checkpoint_pk)
            uow.commit()


def _update(checkpoint_pk: int, fields: dict[str, Any]) -> Checkpoint:
    with persistence().uow() as uow:
        checkpoint = service.update_checkpoint(uow, current_principal().brand_id, checkpoint_pk, fields)
        uow.commit()
        return checkpoint


@blp.route("/optimize-storage/")
class OptimizeStorage(MethodView):
    @blp.answers(OptimizeStorageResultSchema)
    @blp.arguments(OptimizeStorageSchema, required=False)
    def post(self, options: dict[str, Any]) -> dict[str, Any]:
        """Compress old checkpoint data and prune each job beyond a limit (admin)"""
        with persistence().uow() as uow:
            result = service.optimize_storage(
                uow, current_principal().brand_id, options or OptimizeStorageSchema().load({})
            )
            uow.commit()
            return result
