"""HTTP layer of /tasks/scheduled/calendars/: parse, call the service layer, serialize."""

from __future__ import annotations

from functools import partial
from typing import Any

from flask.views import MethodView
from sqlalchemy import exists, select
from sqlalchemy.orm import selectinload

from shared.api import Blueprint
from shared.auth import current_principal
from shared.crud import in_session, in_transaction
from shared.listing import Listing, column_filters, ordering_columns, paginate, timestamp_filters

from ..container import scheduling
from ..models import Calendar, CalendarAttachment, PeriodicTask
from . import service
from .schemas import (
    AttachmentSchema,
    AttachmentViewSchema,
    CalendarCreateSchema,
    CalendarEventsSchema,
    CalendarListArgs,
    CalendarPageSchema,
    CalendarSchema,
    CalendarUpdateSchema,
    EventWindowArgs,
)

blp = Blueprint(
    "calendars",
    __name__,
    url_prefix="/calendars",
    description="Calendars: excluded dates that suppress the runs of the schedules attached to them.",
)

_has_active_task = exists().where(
    CalendarAttachment.calendar_id == Calendar.id,
    CalendarAttachment.periodic_task_id == PeriodicTask.id,
    PeriodicTask.is_active.is_(True),
)
CALENDARS = Listing(
    filters={
        **column_filters(CalendarListArgs, Calendar),
        # has_events: the calendar has at least one active schedule attached (so it shows events)
        "has_events": lambda v: _has_active_task if v else ~_has_active_task,
        **timestamp_filters(Calendar.created_at, Calendar.updated_at),
    },
    ordering=ordering_columns(CalendarListArgs, Calendar),
    tiebreak=Calendar.id,
    search=(Calendar.name, Calendar.description),
)


@blp.route("/")
class Calendars(MethodView):
    @blp.arguments(CalendarListArgs, location="query")
    @blp.response(200, CalendarPageSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """List calendars"""
        stmt = select(Calendar).where(Calendar.brand_id == current_principal().brand_id)
        stmt = CALENDARS.select(stmt, args).options(selectinload(Calendar.attachments))
        return in_session(scheduling(), paginate, stmt, args)

    @blp.arguments(CalendarCreateSchema)
    @blp.response(201, CalendarSchema)
    def post(self, fields: dict[str, Any]) -> Any:
        """Create a calendar"""
        container = scheduling()
        create = partial(service.create_calendar, container)
        return in_transaction(container, create, current_principal().brand_id, fields)


@blp.route("/<int:pk>/")
class CalendarById(MethodView):
    @blp.response(200, CalendarSchema)
    def get(self, pk: int) -> Any:
        """Get a calendar with its attached periodic tasks"""
        return in_session(scheduling(), service.get_calendar, current_principal().brand_id, pk)

    @blp.arguments(CalendarUpdateSchema)
    @blp.response(200, CalendarSchema)
    def put(self, fields: dict[str, Any], pk: int) -> Any:
        """Update a calendar (attached schedules move to their next allowed slot)"""
        return _update(pk, fields)

    @blp.arguments(CalendarUpdateSchema)
    @blp.response(200, CalendarSchema)
    def patch(self, fields: dict[str, Any], pk: int) -> Any:
        """Update some fields of a calendar"""
        return _update(pk, fields)

    @blp.response(204)
    def delete(self, pk: int) -> None:
        """Delete a calendar (admin)"""
        container = scheduling()
        in_transaction(
            container, partial(service.delete_calendar, container), current_principal().brand_id, pk
        )


def _update(pk: int, fields: dict[str, Any]) -> Any:
    container = scheduling()
    update = partial(service.update_calendar, container)
    return in_transaction(container, update, current_principal().brand_id, pk, fields)


@blp.route("/<int:pk>/tasks/")
class Attachments(MethodView):
    @blp.arguments(AttachmentSchema)
    @blp.response(201, AttachmentViewSchema)
    def post(self, body: dict[str, Any], pk: int) -> Any:
        """Attach a periodic task (optionally with its own expression and config here)"""
        container = scheduling()
        return in_transaction(
            container, partial(service.attach, container), current_principal().brand_id, pk, body
        )


@blp.route("/<int:pk>/tasks/<int:task_id>/")
class Attachment(MethodView):
    @blp.response(204)
    def delete(self, pk: int, task_id: int) -> None:
        """Detach a periodic task"""
        container = scheduling()
        in_transaction(
            container, partial(service.detach, container), current_principal().brand_id, pk, task_id
        )


@blp.route("/<int:pk>/events/")
class Events(MethodView):
    @blp.answers(CalendarEventsSchema)
    @blp.arguments(EventWindowArgs, location="query")
    def get(self, args: dict[str, Any], pk: int) -> dict[str, Any]:
        """The runs planned in a window (default: the next 7 days), with time zones and exclusions"""
        container = scheduling()
        with container.uow() as uow:
            return service.events(container, uow, current_principal().brand_id, pk, args)
