"""Reading the platform's server-sent event streams (docs/api.md §1: `GET /tasks/stream/`,
`GET /tasks/{id}/stream/`). sseclient-py parses the wire format; this module adds what a caller of
a long-lived stream needs: reconnecting with `Last-Event-ID` after a dropped connection, so no
change is missed, and JSON decoding of each event's data."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import requests
import sseclient

# The server sends a comment every 15 s; three missed in a row means the connection is dead.
READ_TIMEOUT_S = 45.0
RECONNECT_DELAYS_S = (0.5, 1.0, 2.0, 5.0)


@dataclass(frozen=True)
class StreamEvent:
    """One event: `event` (`task`), `id` (the resumable position) and the decoded `data`."""

    event: str
    id: str | None
    data: Any


def read_events(response: requests.Response) -> Iterator[StreamEvent]:
    # chunk_size=None: each chunk as it arrives, so an event is seen the moment it is sent
    chunks = response.iter_content(chunk_size=None)
    for message in sseclient.SSEClient(chunks).events():
        if not message.data:
            continue  # a keep-alive comment
        try:
            data = json.loads(message.data) if message.data else None
        except ValueError:
            data = message.data
        yield StreamEvent(message.event or "message", message.id or None, data)


def follow(
    open_stream: Callable[[str | None], requests.Response],
    *,
    last_event_id: str | None = None,
    reconnect: bool = True,
    endless: bool = False,
) -> Iterator[StreamEvent]:
    """Events from `open_stream(last_event_id)`, reopened from the last position seen when the
    connection breaks. A stream the server ends cleanly (a one-task stream whose task is final)
    ends the iteration, unless `endless` (the brand's stream, which a proxy may cut after a while:
    it is reopened too). `reconnect=False` never reopens."""
    failures = 0
    while True:
        try:
            response = open_stream(last_event_id)
        except requests.ConnectionError:
            if not reconnect:
                raise
            time.sleep(RECONNECT_DELAYS_S[min(failures, len(RECONNECT_DELAYS_S) - 1)])
            failures += 1
            continue
        ended_by_server = True
        try:
            for event in read_events(response):
                failures = 0
                if event.id:
                    last_event_id = event.id
                yield event
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
            ended_by_server = False
        finally:
            response.close()
        if not reconnect or (ended_by_server and not endless):
            return
        time.sleep(RECONNECT_DELAYS_S[min(failures, len(RECONNECT_DELAYS_S) - 1)])
        failures += 1
