"""Calendar request and response schemas (docs/api.md §4)."""

from __future__ import annotations

from typing import Any

import marshmallow as ma

from shared.api import ReadSchema, Schema, Timestamp
from shared.listing import FlexibleBoolean, ListArgs, Ordering, QueryArgs, page_schema

from ..exclusions import parse_excluded_dates

COLOR = r"^#[0-9a-fA-F]{6}$"


class ExcludedDates(ma.fields.Field):
    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> list[dict[str, str] | str]:
        try:
            return parse_excluded_dates(value)
        except ValueError as error:
            raise ma.ValidationError(str(error)) from None


class _CalendarFields(Schema):
    """`default_timezone` is checked by the service layer (TIMEZONE_INVALID)."""

    name = ma.fields.String(validate=ma.validate.Length(min=1, max=200))
    description = ma.fields.String(validate=ma.validate.Length(max=5000))
    color = ma.fields.String(validate=ma.validate.Regexp(COLOR, error="Give a #rrggbb color."))
    is_active = ma.fields.Boolean()
    default_timezone = ma.fields.String(validate=ma.validate.Length(min=1, max=64))
    excluded_dates = ExcludedDates()


class CalendarCreateSchema(_CalendarFields):
    name = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=200))


class CalendarUpdateSchema(_CalendarFields):
    """PUT and PATCH both take any subset of the writable fields."""


class AttachmentSchema(Schema):
    periodic_task = ma.fields.Integer(required=True)
    custom_cron = ma.fields.String(allow_none=True, load_default=None, validate=ma.validate.Length(max=120))
    custom_config = ma.fields.Dict(keys=ma.fields.String(), load_default=dict)


class AttachmentViewSchema(ReadSchema):
    periodic_task = ma.fields.Integer(attribute="periodic_task_id")
    custom_cron = ma.fields.String(allow_none=True)
    custom_config = ma.fields.Dict()


class CalendarSchema(ReadSchema):
    id = ma.fields.Integer()
    name = ma.fields.String()
    description = ma.fields.String()
    color = ma.fields.String()
    is_active = ma.fields.Boolean()
    default_timezone = ma.fields.String()
    excluded_dates = ma.fields.List(ma.fields.Raw())
    periodic_tasks = ma.fields.List(ma.fields.Nested(AttachmentViewSchema), attribute="attachments")
    created_at = Timestamp()
    updated_at = Timestamp()


CalendarPageSchema = page_schema(CalendarSchema, "CalendarPage")


class CalendarListArgs(ListArgs):
    is_active = FlexibleBoolean()
    has_events = FlexibleBoolean()
    ordering = Ordering(["created_at", "updated_at", "name"])


class EventWindowArgs(QueryArgs):
    start = ma.fields.String()
    end = ma.fields.String()


class _Event(ReadSchema):
    periodic_task_id = ma.fields.Integer()
    task_type = ma.fields.String()
    description = ma.fields.String(allow_none=True)
    scheduled_at = ma.fields.String()


class _EventPeriod(ReadSchema):
    start = ma.fields.String()
    end = ma.fields.String()


class CalendarEventsSchema(ReadSchema):
    calendar_id = ma.fields.Integer()
    calendar_name = ma.fields.String()
    period = ma.fields.Nested(_EventPeriod)
    events = ma.fields.List(ma.fields.Nested(_Event))
    total_events = ma.fields.Integer()
