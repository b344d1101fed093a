"""The streams' query arguments: the list's `status`, `task_type` and `priority` filters."""

from __future__ import annotations

import marshmallow as ma

from shared.listing import CommaList, QueryArgs
from shared.task_states import PRIORITIES, STATUSES


class StreamArgs(QueryArgs):
    status = CommaList(STATUSES + ("active",))
    task_type = CommaList()
    priority = CommaList(PRIORITIES)
    # EventSource cannot send headers on its first request: the position may come as a parameter
    last_event_id = ma.fields.String(validate=ma.validate.Length(max=60))
