"""A synchronous Python client of the taskhub API (docs/api.md), built on requests.

    from taskhub import Client

    client = Client("http://localhost:8080", token, brand=9)
    handle = client.submit("example.sleep", context={"seconds": 2, "steps": 4})
    task = handle.wait(timeout=60, progress=lambda t: print(t["progress_percentage"]))
    print(handle.result())                    # result_data, or TaskFailedError / TaskCancelledError
    for task in client.tasks(status="failed"):  # follows `next` page after page
        ...

Every error answer raises the exception class of its `error_code` (taskhub.errors). Waiting
follows the task's event stream when the platform offers it and falls back to polling."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import requests

from .errors import (
    ApiError,
    TaskCancelledError,
    TaskFailedError,
    TransportError,
    WaitTimeout,
    error_from_response,
)
from .streams import READ_TIMEOUT_S, StreamEvent, follow, read_events

FINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})
BULK_LIMIT = 1000  # POST /tasks/bulk/ takes at most this many per call
POLL_INTERVAL_S = 0.5

Progress = Callable[[dict[str, Any]], None]


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("taskhub")
    except Exception:  # not installed (a checkout on PYTHONPATH)
        return "dev"


@dataclass(frozen=True)
class Page:
    """One page of a list: `count` (exact unless `count_is_exact` is False), `results`, `next`."""

    count: int
    results: list[dict[str, Any]]
    next: str | None
    previous: str | None
    count_is_exact: bool = True


class Client:
    """The API of one platform, as one user of one brand (`token`, `brand`)."""

    def __init__(
        self,
        url: str,
        token: str,
        brand: int | str,
        *,
        timeout: float = 10.0,
        session: requests.Session | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.brand = int(brand)
        self.timeout = timeout
        self.session = session or requests.Session()
        self.session.headers.update(
            {
                "Authorization": f"Bearer {token}",
                "X-Brand-ID": str(self.brand),
                "Accept": "application/json",
                "User-Agent": f"taskhub-client/{_version()}",
            }
        )

    # ---- raw calls

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """One call; the decoded JSON body (None for 204), or the error class of its error_code."""
        url = path if path.startswith(("http://", "https://")) else self.url + path
        try:
            response = self.session.request(
                method,
                url,
                params=_query(params),
                json=json,
                headers=dict(headers or {}),
                timeout=self.timeout,
            )
        except requests.RequestException as error:
            raise TransportError(f"{self.url} could not be reached: {error}") from error
        return _decoded(response)

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        return self.request("POST", path, json=body if body is not None else {}, **kwargs)

    def page(self, path: str, **params: Any) -> Page:
        body = self.get(path, **params)
        return Page(
            count=int(body.get("count", 0)),
            results=list(body.get("results", [])),
            next=body.get("next"),
            previous=body.get("previous"),
            count_is_exact=bool(body.get("count_is_exact", True)),
        )

    def iterate(self, path: str, **params: Any) -> Iterator[dict[str, Any]]:
        """Every item of a list, following `next` (the platform's links keep the filters)."""
        page = self.page(path, **params)
        while True:
            yield from page.results
            if not page.next:
                return
            page = self.page(page.next)

    # ---- tasks (core)

    def submit(
        self,
        task_type: str,
        *,
        context: Mapping[str, Any] | None = None,
        priority: str | None = None,
        description: str | None = None,
        scheduled_for: str | None = None,
        max_retries: int | None = None,
        timeout_minutes: int | None = None,
        idempotency_key: str | None = None,
    ) -> TaskHandle:
        """Create a task (POST /tasks/); `idempotency_key` makes a repeat return the first task."""
        body = _task_body(
            task_type, context, priority, description, scheduled_for, max_retries, timeout_minutes
        )
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return TaskHandle(self, self.request("POST", "/tasks/", json=body, headers=headers))

    def submit_many(self, tasks: Iterable[Mapping[str, Any]]) -> list[TaskHandle]:
        """Create many tasks with POST /tasks/bulk/, 1,000 per call (each call all or nothing).
        Each element is a POST /tasks/ body and may carry its own `idempotency_key`."""
        handles: list[TaskHandle] = []
        batch: list[dict[str, Any]] = []
        for item in tasks:
            batch.append(dict(item))
            if len(batch) == BULK_LIMIT:
                handles += self._bulk(batch)
                batch = []
        if batch:
            handles += self._bulk(batch)
        return handles

    def _bulk(self, batch: list[dict[str, Any]]) -> list[TaskHandle]:
        created = self.post("/tasks/bulk/", {"tasks": batch})
        return [TaskHandle(self, task) for task in created["results"]]

    def task(self, task_id: int) -> TaskHandle:
        """A handle on an existing task (fetched now)."""
        return TaskHandle(self, self.get_task(task_id))

    def get_task(self, task_id: int) -> dict[str, Any]:
        return dict(self.get(f"/tasks/{int(task_id)}/"))

    def tasks(self, **filters: Any) -> Iterator[dict[str, Any]]:
        """Every task matching the list's filters (docs/api.md §1), e.g. `status="failed,cancelled"`."""
        return self.iterate("/tasks/", **filters)

    def retry(self, task_id: int, **options: Any) -> dict[str, Any]:
        return dict(self.post(f"/tasks/{int(task_id)}/retry/", options))

    def cancel(self, task_id: int) -> dict[str, Any]:
        return dict(self.post(f"/tasks/{int(task_id)}/cancel/"))

    def delete(self, task_id: int) -> None:
        self.request("DELETE", f"/tasks/{int(task_id)}/")

    def queue_stats(self) -> dict[str, Any]:
        return dict(self.get("/tasks/queue-stats/"))

    def task_types(self) -> list[dict[str, Any]]:
        return list(self.get("/tasks/types/")["task_types"])

    def stream(
        self, *, last_event_id: str | None = None, reconnect: bool = True, **filters: Any
    ) -> Iterator[StreamEvent]:
        """The brand's task changes as they happen (GET /tasks/stream/, the list's `status`,
        `task_type` and `priority` filters), resumed from `last_event_id` and after a break."""
        return follow(
            lambda position: self._open_stream("/tasks/stream/", filters, position),
            last_event_id=last_event_id,
            reconnect=reconnect,
            endless=True,
        )

    def stream_task(self, task_id: int, *, last_event_id: str | None = None) -> Iterator[StreamEvent]:
        """One task's changes from its current state until it is final (GET /tasks/{id}/stream/)."""
        return follow(
            lambda position: self._open_stream(f"/tasks/{int(task_id)}/stream/", {}, position),
            last_event_id=last_event_id,
        )

    def _open_stream(
        self, path: str, params: Mapping[str, Any], position: str | None, read_timeout: float = READ_TIMEOUT_S
    ) -> requests.Response:
        headers = {"Accept": "text/event-stream"}
        if position:
            headers["Last-Event-ID"] = position
        response = self.session.get(
            self.url + path,
            params=_query(params),
            headers=headers,
            stream=True,
            timeout=(self.timeout, read_timeout),
        )
        if response.status_code != 200:
            _decoded(response)  # raises the error's class
        return response

    # ---- workers and queues (monitoring)

    def workers(self, **filters: Any) -> Iterator[dict[str, Any]]:
        return self.iterate("/tasks/monitoring/workers/", **filters)

    def workers_overview(self) -> dict[str, Any]:
        return dict(self.get("/tasks/monitoring/workers/overview/"))

    # ---- persistent jobs (persistence)

    def jobs(self, **filters: Any) -> Iterator[dict[str, Any]]:
        return self.iterate("/tasks/persistent-jobs/persistent-jobs/", **filters)

    def job(self, job_id: int) -> dict[str, Any]:
        return dict(self.get(f"/tasks/persistent-jobs/persistent-jobs/{int(job_id)}/"))

    def pause_job(self, job_id: int) -> dict[str, Any]:
        return dict(self.post(f"/tasks/persistent-jobs/persistent-jobs/{int(job_id)}/pause/"))

    def resume_job(self, job_id: int, **options: Any) -> dict[str, Any]:
        return dict(self.post(f"/tasks/persistent-jobs/persistent-jobs/{int(job_id)}/resume/", options))

    def restart_job(self, job_id: int, **options: Any) -> dict[str, Any]:
        return dict(self.post(f"/tasks/persistent-jobs/persistent-jobs/{int(job_id)}/restart/", options))

    # ---- schedules (scheduling)

    def periodic_tasks(self, **filters: Any) -> Iterator[dict[str, Any]]:
        return self.iterate("/tasks/scheduled/periodic-tasks/", **filters)

    def create_periodic_task(
        self,
        task_type: str,
        cron_expression: str,
        *,
        timezone: str | None = None,
        context: Mapping[str, Any] | None = None,
        priority: str | None = None,
        description: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"task_type": task_type, "cron_expression": cron_expression, **fields}
        for key, value in (
            ("timezone", timezone),
            ("context_data", context),
            ("priority", priority),
            ("description", description),
        ):
            if value is not None:
                body[key] = dict(value) if isinstance(value, Mapping) else value
        return dict(self.post("/tasks/scheduled/periodic-tasks/", body))

    def toggle_periodic_task(self, schedule_id: int) -> dict[str, Any]:
        return dict(self.post(f"/tasks/scheduled/periodic-tasks/{int(schedule_id)}/toggle/"))

    def run_periodic_task(self, schedule_id: int) -> dict[str, Any]:
        """Start a run now without moving the schedule (execute-now)."""
        return dict(self.post(f"/tasks/scheduled/periodic-tasks/{int(schedule_id)}/execute-now/"))

    def cron_jobs(self, **filters: Any) -> Iterator[dict[str, Any]]:
        return self.iterate("/tasks/scheduled/cron-jobs/", **filters)

    def run_cron_job(self, cron_job_id: int) -> dict[str, Any]:
        return dict(self.post(f"/tasks/scheduled/cron-jobs/{int(cron_job_id)}/execute/"))


class TaskHandle:
    """A task this client created or looked up: its last known state in `data`."""

    def __init__(self, client: Client, data: Mapping[str, Any]) -> None:
        self.client = client
        self.data = dict(data)

    def __repr__(self) -> str:
        return f"<TaskHandle {self.id} {self.data.get('task_type')} {self.status}>"

    @property
    def id(self) -> int:
        return int(self.data["id"])

    @property
    def task_id(self) -> str:
        return str(self.data["task_id"])

    @property
    def status(self) -> str:
        return str(self.data.get("status"))

    @property
    def done(self) -> bool:
        return self.status in FINAL_STATUSES

    def refresh(self) -> dict[str, Any]:
        self.data = self.client.get_task(self.id)
        return self.data

    def wait(self, timeout: float | None = None, progress: Progress | None = None) -> dict[str, Any]:
        """Block until the task is final and return it; `progress(task)` is called on each change
        seen. Raises WaitTimeout past `timeout` seconds (None: no limit)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self.done:
            try:
                self._wait_streaming(deadline, progress)
            except _StreamUnavailable:
                self._wait_polling(deadline, progress)
        if not self.done:
            raise WaitTimeout(self.data, timeout or 0)
        return self.data

    def result(self, timeout: float | None = None) -> Any:
        """The task's `result_data` once it completed (waiting for it), or TaskFailedError /
        TaskCancelledError."""
        task = self.wait(timeout)
        if task["status"] == "failed":
            raise TaskFailedError(task, f"task {self.id} failed: {task.get('error_message') or 'no message'}")
        if task["status"] == "cancelled":
            raise TaskCancelledError(task, f"task {self.id} was cancelled")
        return task.get("result_data")

    def cancel(self) -> dict[str, Any]:
        answer = self.client.cancel(self.id)
        self.refresh()
        return answer

    def retry(self, **options: Any) -> dict[str, Any]:
        answer = self.client.retry(self.id, **options)
        self.refresh()
        return answer

    def _seen(self, task: Mapping[str, Any], progress: Progress | None) -> None:
        changed = (task.get("status"), task.get("progress_percentage")) != (
            self.data.get("status"),
            self.data.get("progress_percentage"),
        )
        self.data = {**self.data, **task}
        if progress is not None and changed:
            progress(self.data)

    def _wait_streaming(self, deadline: float | None, progress: Progress | None) -> None:
        """Follow the task's stream; the read timeout is the time left, so that a quiet task
        (only keep-alive comments) still ends the wait at its deadline."""
        position: str | None = None
        while not self.done:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return
            read_timeout = READ_TIMEOUT_S if left is None else min(READ_TIMEOUT_S, max(left, 0.1))
            try:
                response = self.client._open_stream(f"/tasks/{self.id}/stream/", {}, position, read_timeout)
            except ApiError as error:
                # no streams here, all taken (429), or the service briefly away: poll instead
                unavailable = error.status in (404, 405, 429) or error.status >= 500
                if unavailable and error.error_code != "TASK_NOT_FOUND":
                    raise _StreamUnavailable() from error
                raise
            except requests.RequestException as error:
                raise _StreamUnavailable() from error
            try:
                for event in read_events(response):
                    position = event.id or position
                    if event.event == "task" and isinstance(event.data, dict):
                        self._seen(event.data, progress)
                    if self.done or (deadline is not None and time.monotonic() > deadline):
                        return
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
                continue  # the time left ran out while nothing came, or the connection broke
            finally:
                response.close()
            if not self.done:  # ended by the server: final (or deleted) since the last event
                self._seen(self.client.get_task(self.id), progress)
                return

    def _wait_polling(self, deadline: float | None, progress: Progress | None) -> None:
        while True:
            self._seen(self.client.get_task(self.id), progress)
            if self.done or (deadline is not None and time.monotonic() > deadline):
                return
            time.sleep(POLL_INTERVAL_S)


class _StreamUnavailable(Exception):
    pass


def _task_body(
    task_type: str,
    context: Mapping[str, Any] | None,
    priority: str | None,
    description: str | None,
    scheduled_for: str | None,
    max_retries: int | None,
    timeout_minutes: int | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"task_type": task_type, "context_data": dict(context or {})}
    optional = {
        "priority": priority,
        "description": description,
        "scheduled_for": scheduled_for,
        "max_retries": max_retries,
        "timeout_minutes": timeout_minutes,
    }
    body.update({key: value for key, value in optional.items() if value is not None})
    return body


def _query(params: Mapping[str, Any] | None) -> dict[str, str]:
    """Query values as the API reads them: booleans lower-case, lists comma-joined, None left out."""
    query: dict[str, str] = {}
    for key, value in (params or {}).items():
        if value is None:
            continue
        if isinstance(value, bool):
            query[key] = "true" if value else "false"
        elif isinstance(value, (list, tuple, set, frozenset)):
            query[key] = ",".join(str(v) for v in value)
        else:
            query[key] = str(value)
    return query


def _decoded(response: requests.Response) -> Any:
    if response.status_code == 204:
        return None
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code >= 400:
        raise error_from_response(response.status_code, body)
    if body is None and response.content:
        raise TransportError(
            f"{response.request.method} {response.url}: the answer is not JSON", status=response.status_code
        )
    return body
