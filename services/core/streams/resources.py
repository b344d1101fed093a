"""HTTP layer of the task streams: auth and brand scope as every call, a slot per open stream
(429 past the process's limit), then the feed as `text/event-stream`, unbuffered through nginx."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from flask import Flask, Response, current_app, request
from flask.views import MethodView

from shared.api import Blueprint
from shared.auth import current_principal
from shared.config import env_float, env_int
from shared.domain_errors import NotFound
from shared.errors import ApiError

from ..container import core
from .changes import StreamSlots, TaskChanges
from .feed import Feed, FeedSettings, brand_head, brand_query, task_query
from .positions import Position
from .schemas import StreamArgs

blp = Blueprint("task_streams", __name__, description="Live task changes (server-sent events).")

SSE_DOC = {
    "responses": {
        "200": {
            "description": "`event: task` with the task as the list shows it; `id:` resumes (Last-Event-ID).",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        }
    }
}


class Streams:
    """The process's wake-ups, slots and feed settings (app.extensions["core.streams"])."""

    def __init__(self, changes: TaskChanges, slots: StreamSlots, settings: FeedSettings) -> None:
        self.changes, self.slots, self.settings = changes, slots, settings


def init_app(app: Flask) -> None:
    container = core_of(app)
    settings = container.ctx.settings
    # each open stream holds one of gunicorn's threads: by default half of them may
    threads = int(os.environ.get("GUNICORN_THREADS") or 4)
    streams = Streams(
        TaskChanges(poll_seconds=env_float(settings, "TASKHUB_STREAM_POLL_SECONDS", 0.0)),
        StreamSlots(env_int(settings, "TASKHUB_MAX_STREAMS", max(1, threads // 2))),
        FeedSettings(
            keepalive_seconds=env_float(settings, "TASKHUB_STREAM_KEEPALIVE_SECONDS", 15.0),
            overlap_seconds=env_float(settings, "TASKHUB_STREAM_OVERLAP_SECONDS", 2.0),
        ),
    )
    streams.changes.follow_commits(container.session_factory)
    streams.changes.listen(container.ctx.engine)
    app.extensions["core.streams"] = streams


def core_of(app: Flask) -> Any:
    return app.extensions["core"]


def streams() -> Streams:
    return current_app.extensions["core.streams"]


def _position(args: dict[str, Any]) -> Position | None:
    raw = request.headers.get("Last-Event-ID") or args.get("last_event_id")
    return Position.decode(raw) if raw else None


def _respond(feed: Feed, state: Streams) -> Response:
    if not state.slots.try_take():
        raise ApiError(
            429,
            "RATE_LIMITED",
            f"This process already serves {state.slots.limit} streams; retry shortly, or poll the list.",
            headers={"Retry-After": "5"},
        )

    def body() -> Iterator[str]:
        try:
            with state.changes.followed():
                yield from feed.events()
        finally:  # the client went away (or the task is final): the thread and slot are free
            state.slots.give_back()

    return Response(
        body(),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@blp.route("/stream/")
class TaskStream(MethodView):
    @blp.arguments(StreamArgs, location="query")
    @blp.doc(**SSE_DOC)
    def get(self, args: dict[str, Any]) -> Response:
        """Follow the brand's task changes (server-sent events)"""
        state, container = streams(), core()
        brand_id = current_principal().brand_id
        feed = Feed(
            container.session_factory,
            state.changes,
            brand_query(brand_id, args),
            _position(args),
            state.settings,
        )
        if feed.position is None:
            feed.start_at(brand_head(container.session_factory, brand_id))
        return _respond(feed, state)


@blp.route("/<int:task_pk>/stream/")
class OneTaskStream(MethodView):
    @blp.arguments(StreamArgs, location="query")
    @blp.doc(**SSE_DOC)
    def get(self, args: dict[str, Any], task_pk: int) -> Response:
        """Follow one task from its current state until it is final"""
        state, container = streams(), core()
        query = task_query(current_principal().brand_id, task_pk)
        feed = Feed(container.session_factory, state.changes, query, None, state.settings, until_final=True)
        if feed.head() is None:
            raise NotFound("Task", "TASK_NOT_FOUND")
        position = _position(args)
        feed.position = position
        return _respond(feed, state)
