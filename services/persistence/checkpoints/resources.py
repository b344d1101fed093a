"""HTTP layer of /tasks/persistent-jobs/checkpoints/."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from sqlalchemy import select

from shared.api import Blueprint
from shared.auth import current_principal
from shared.crud import in_session, in_transaction
from shared.listing import Listing, column_filters, ordering_columns, paginate, timestamp_filters

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

CHECKPOINTS = Listing(
    filters={
        **column_filters(CheckpointListArgs, Checkpoint),
        "persistent_job": lambda v: Checkpoint.job_id.in_(v),
        "has_large_data": lambda v: (
            (Checkpoint.data_size_bytes > LARGE_DATA_BYTES)
            if v
            else (Checkpoint.data_size_bytes <= LARGE_DATA_BYTES)
        ),
        **timestamp_filters(Checkpoint.created_at, Checkpoint.updated_at),
    },
    ordering=ordering_columns(CheckpointListArgs, Checkpoint),
    tiebreak=Checkpoint.id,
    search=(Checkpoint.step_name,),
    ranges={"data_size_bytes": Checkpoint.data_size_bytes},
)


@blp.route("/")
class Checkpoints(MethodView):
    @blp.arguments(CheckpointListArgs, location="query")
    @blp.response(200, CheckpointPageSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """List checkpoints"""
        stmt = select(Checkpoint).where(Checkpoint.brand_id == current_principal().brand_id)
        return in_session(persistence(), paginate, CHECKPOINTS.select(stmt, args), args)

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
        return in_session(persistence(), service.get_checkpoint, current_principal().brand_id, checkpoint_pk)

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
        in_transaction(persistence(), service.delete_checkpoint, current_principal().brand_id, checkpoint_pk)


def _update(checkpoint_pk: int, fields: dict[str, Any]) -> Checkpoint:
    brand_id = current_principal().brand_id
    return in_transaction(persistence(), service.update_checkpoint, brand_id, checkpoint_pk, fields)


@blp.route("/optimize-storage/")
class OptimizeStorage(MethodView):
    @blp.answers(OptimizeStorageResultSchema)
    @blp.arguments(OptimizeStorageSchema, required=False)
    def post(self, options: dict[str, Any]) -> dict[str, Any]:
        """Compress old checkpoint data and prune each job beyond a limit (admin)"""
        options = options or OptimizeStorageSchema().load({})
        return in_transaction(persistence(), service.optimize_storage, current_principal().brand_id, options)
