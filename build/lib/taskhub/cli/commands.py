"""The subcommands. Each is a thin use of taskhub.Client; the API decides and explains."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from itertools import islice
from typing import Any

import click
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from ..client import TaskHandle
from ..dev_token import ROLES, dev_secret, mint
from ..errors import WaitTimeout
from .root import (
    EXIT_TASK_CANCELLED,
    EXIT_TASK_FAILED,
    EXIT_WAIT_TIMEOUT,
    Invocation,
    err,
    fail,
    out,
    root,
)

pass_invocation = click.make_pass_decorator(Invocation)
Columns = list[tuple[str, Callable[[dict[str, Any]], Any]]]

TASK_COLUMNS: Columns = [
    ("id", lambda t: t["id"]),
    ("type", lambda t: t["task_type"]),
    ("status", lambda t: t["status"]),
    ("priority", lambda t: t["priority"]),
    ("progress", lambda t: f"{t.get('progress_percentage') or 0}%"),
    ("created", lambda t: t["created_at"]),
    ("worker", lambda t: t.get("worker_name")),
]


def _json_object(text: str | None, option: str) -> dict[str, Any]:
    if not text:
        return {}
    if text.startswith("@"):
        with open(text[1:]) as file:
            text = file.read()
    try:
        value = json.loads(text)
    except ValueError as error:
        raise click.BadParameter(f"not JSON: {error}", param_hint=option) from None
    if not isinstance(value, dict):
        raise click.BadParameter("must be a JSON object", param_hint=option)
    return value


def _limited(items: Iterator[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    return list(items if limit <= 0 else islice(items, limit))


# ---------------------------------------------------------------------------------------- tasks


@root.group()
def tasks() -> None:
    """Submit, list, show, retry and cancel tasks."""


@tasks.command("submit")
@click.argument("task_type")
@click.option("--context", "-c", help="context_data as a JSON object, or @file.json")
@click.option("--priority", "-p", type=click.Choice(["low", "normal", "high", "critical"]))
@click.option("--description", "-d")
@click.option("--scheduled-for", help="ISO 8601 time to run at (UTC with Z, or with an offset)")
@click.option("--max-retries", type=int)
@click.option("--timeout-minutes", type=int)
@click.option("--idempotency-key", help="a repeat with the same key returns the first task")
@click.option("--wait", "-w", is_flag=True, help="follow the task to its end; the exit code says how")
@click.option("--timeout", type=float, help="seconds to wait at most (with --wait)")
@pass_invocation
def submit(
    inv: Invocation,
    task_type: str,
    context: str | None,
    priority: str | None,
    description: str | None,
    scheduled_for: str | None,
    max_retries: int | None,
    timeout_minutes: int | None,
    idempotency_key: str | None,
    wait: bool,
    timeout: float | None,
) -> None:
    """Create a task of TASK_TYPE (e.g. example.sleep)."""
    handle = inv.client().submit(
        task_type,
        context=_json_object(context, "--context"),
        priority=priority,
        description=description,
        scheduled_for=scheduled_for,
        max_retries=max_retries,
        timeout_minutes=timeout_minutes,
        idempotency_key=idempotency_key,
    )
    if not wait:
        inv.show(handle.data) if inv.as_json else out.print(f"{handle.id}\t{handle.task_id}\t{handle.status}")
        return
    _wait_and_exit(inv, handle, timeout)


def _wait_and_exit(inv: Invocation, handle: TaskHandle, timeout: float | None) -> None:
    try:
        task = handle.wait(timeout) if inv.as_json else _wait_with_bar(handle, timeout)
    except WaitTimeout as error:
        if inv.as_json:
            inv.show(error.task)
        fail(str(error), EXIT_WAIT_TIMEOUT)
    if inv.as_json:
        inv.show(task)
    elif task["status"] == "completed":
        out.print(f"task {handle.id} completed")
        out.print_json(json.dumps(task.get("result_data")))
    if task["status"] == "failed":
        fail(f"task {handle.id} failed: {task.get('error_message')}", EXIT_TASK_FAILED)
    if task["status"] == "cancelled":
        fail(f"task {handle.id} was cancelled", EXIT_TASK_CANCELLED)


def _wait_with_bar(handle: TaskHandle, timeout: float | None) -> dict[str, Any]:
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err, transient=False) as bar:
        row = bar.add_task(f"{handle.data['task_type']} #{handle.id}", total=100, status=handle.status)

        def update(task: dict[str, Any]) -> None:
            bar.update(row, completed=task.get("progress_percentage") or 0, status=task["status"])

        update(handle.data)
        task = handle.wait(timeout, progress=update)
        update(task)
        return task


@tasks.command("list")
@click.option("--status", "-s", help="comma list, or `active`")
@click.option("--type", "task_type", help="task_type (exact)")
@click.option("--priority", help="comma list")
@click.option("--search", help="over task_id, task_type, description")
@click.option("--ordering", default="-created_at", show_default=True)
@click.option("--limit", "-n", type=int, default=25, show_default=True, help="0: every match")
@pass_invocation
def list_tasks(
    inv: Invocation,
    status: str | None,
    task_type: str | None,
    priority: str | None,
    search: str | None,
    ordering: str,
    limit: int,
) -> None:
    """List the brand's tasks, newest first."""
    filters = {"status": status, "task_type": task_type, "priority": priority, "search": search}
    page_size = 100 if limit <= 0 or limit > 25 else limit
    rows = _limited(inv.client().tasks(ordering=ordering, page_size=page_size, **filters), limit)
    inv.show(rows, TASK_COLUMNS)


@tasks.command("show")
@click.argument("task_id", type=int)
@pass_invocation
def show(inv: Invocation, task_id: int) -> None:
    """One task with its status history."""
    task = inv.client().get_task(task_id)
    if inv.as_json:
        inv.show(task)
        return
    history = task.pop("status_history", None) or task.pop("history", None)
    inv.show(task, title=f"task {task_id}")
    if history:
        inv.show(
            history,
            [(key, (lambda k: lambda row: row.get(k))(key)) for key in history[0]],
            title="status history",
        )


@tasks.command("retry")
@click.argument("task_id", type=int)
@click.option("--reset-progress", is_flag=True)
@click.option("--clear-errors", is_flag=True)
@click.option("--priority", "new_priority", type=click.Choice(["low", "normal", "high", "critical"]))
@click.option("--wait", "-w", is_flag=True)
@click.option("--timeout", type=float)
@pass_invocation
def retry(
    inv: Invocation,
    task_id: int,
    reset_progress: bool,
    clear_errors: bool,
    new_priority: str | None,
    wait: bool,
    timeout: float | None,
) -> None:
    """Retry a failed or cancelled task."""
    options: dict[str, Any] = {"reset_progress": reset_progress, "clear_errors": clear_errors}
    if new_priority:
        options["new_priority"] = new_priority
    client = inv.client()
    answer = client.retry(task_id, **options)
    if wait:
        _wait_and_exit(inv, client.task(task_id), timeout)
    else:
        inv.show(answer)


@tasks.command("cancel")
@click.argument("task_id", type=int)
@pass_invocation
def cancel(inv: Invocation, task_id: int) -> None:
    """Cancel a task (a running one is told to stop)."""
    inv.show(inv.client().cancel(task_id))


# ------------------------------------------------------------------------------ workers, queues


@root.command()
@click.option("--online/--all", default=False, help="only the online ones")
@pass_invocation
def workers(inv: Invocation, online: bool) -> None:
    """Workers: online, queues, load, active tasks."""
    filters = {"is_online": True} if online else {}
    rows = list(inv.client().workers(page_size=100, **filters))
    inv.show(
        rows,
        [
            ("name", lambda w: w["worker_name"]),
            ("online", lambda w: "yes" if w.get("is_online") else "no"),
            ("queues", lambda w: w.get("queue_name")),
            ("active", lambda w: w.get("active_tasks")),
            ("processed", lambda w: w.get("processed_tasks")),
            ("failed", lambda w: w.get("failed_tasks")),
            ("cpu %", lambda w: w.get("cpu_percent")),
            ("load", lambda w: w.get("load_average")),
            ("heartbeat", lambda w: w.get("last_heartbeat")),
        ],
    )


@root.command()
@pass_invocation
def queues(inv: Invocation) -> None:
    """Queues: the brand's pending and running tasks, and the broker's live depth and consumers."""
    stats = inv.client().queue_stats()
    if inv.as_json:
        inv.show(stats)
        return
    rows = [{"queue": name, **figures} for name, figures in stats.get("queues", {}).items()]
    inv.show(
        rows,
        [
            (key, (lambda k: lambda row: row.get(k))(key))
            for key in (
                "queue",
                "pending",
                "running",
                "total_today",
                "broker_ready",
                "broker_unacked",
                "consumers",
            )
        ],
        title=f"{stats.get('total_tasks', 0)} tasks",
    )


# -------------------------------------------------------------------------------- schedules


@root.group()
def schedules() -> None:
    """Periodic tasks: list, create, toggle, run now."""


SCHEDULE_COLUMNS: Columns = [
    ("id", lambda s: s["id"]),
    ("type", lambda s: s.get("task_type")),
    ("cron", lambda s: s.get("cron_expression")),
    ("timezone", lambda s: s.get("timezone")),
    ("active", lambda s: "yes" if s.get("is_active") else "no"),
    ("next run", lambda s: s.get("next_run_at")),
    ("last run", lambda s: s.get("last_run_at")),
    ("last status", lambda s: s.get("last_run_status")),
]


@schedules.command("list")
@click.option("--active/--all", default=False)
@click.option("--limit", "-n", type=int, default=50, show_default=True, help="0: every schedule")
@pass_invocation
def list_schedules(inv: Invocation, active: bool, limit: int) -> None:
    """The brand's periodic tasks."""
    filters = {"is_active": True} if active else {}
    inv.show(_limited(inv.client().periodic_tasks(page_size=100, **filters), limit), SCHEDULE_COLUMNS)


@schedules.command("create")
@click.argument("task_type")
@click.argument("cron_expression")
@click.option("--timezone", "-z", help="IANA name (default UTC)")
@click.option("--context", "-c", help="context_data as a JSON object, or @file.json")
@click.option("--priority", "-p", type=click.Choice(["low", "normal", "high", "critical"]))
@click.option("--description", "-d")
@click.option("--inactive", is_flag=True, help="create it switched off")
@pass_invocation
def create_schedule(
    inv: Invocation,
    task_type: str,
    cron_expression: str,
    timezone: str | None,
    context: str | None,
    priority: str | None,
    description: str | None,
    inactive: bool,
) -> None:
    """Run TASK_TYPE on CRON_EXPRESSION (e.g. "0 9 * * 1-5" or @hourly)."""
    extra = {"is_active": False} if inactive else {}
    inv.show(
        inv.client().create_periodic_task(
            task_type,
            cron_expression,
            timezone=timezone,
            context=_json_object(context, "--context"),
            priority=priority,
            description=description,
            **extra,
        )
    )


@schedules.command("toggle")
@click.argument("schedule_id", type=int)
@pass_invocation
def toggle_schedule(inv: Invocation, schedule_id: int) -> None:
    """Switch a periodic task on or off."""
    inv.show(inv.client().toggle_periodic_task(schedule_id))


@schedules.command("run")
@click.argument("schedule_id", type=int)
@click.option("--wait", "-w", is_flag=True)
@click.option("--timeout", type=float)
@pass_invocation
def run_schedule(inv: Invocation, schedule_id: int, wait: bool, timeout: float | None) -> None:
    """Start a run of a periodic task now (the schedule does not move)."""
    client = inv.client()
    answer = client.run_periodic_task(schedule_id)
    if wait:
        _wait_and_exit(inv, TaskHandle(client, answer["task"]), timeout)
    else:
        inv.show(answer)


# ------------------------------------------------------------------------------------- jobs


@root.group()
def jobs() -> None:
    """Persistent jobs: list, pause, resume."""


@jobs.command("list")
@click.option("--status", "-s")
@click.option("--limit", "-n", type=int, default=25, show_default=True)
@pass_invocation
def list_jobs(inv: Invocation, status: str | None, limit: int) -> None:
    """The brand's persistent jobs."""
    rows = _limited(inv.client().jobs(status=status, page_size=100), limit)
    inv.show(
        rows,
        [
            ("id", lambda j: j["id"]),
            ("task", lambda j: (j.get("base_task") or {}).get("id")),
            ("type", lambda j: (j.get("base_task") or {}).get("task_type")),
            ("status", lambda j: j.get("status")),
            ("progress", lambda j: f"{j.get('progress_percentage') or 0}%"),
            ("checkpoints", lambda j: j.get("checkpoints_count")),
            ("can resume", lambda j: "yes" if j.get("can_resume") else "no"),
        ],
    )


@jobs.command("pause")
@click.argument("job_id", type=int)
@pass_invocation
def pause_job(inv: Invocation, job_id: int) -> None:
    """Pause a running job at its next checkpoint."""
    inv.show(inv.client().pause_job(job_id))


@jobs.command("resume")
@click.argument("job_id", type=int)
@click.option("--from-checkpoint", type=int, help="a checkpoint id (default: the newest recovery point)")
@pass_invocation
def resume_job(inv: Invocation, job_id: int, from_checkpoint: int | None) -> None:
    """Resume a paused, failed or interrupted job from a checkpoint."""
    options = {"from_checkpoint": from_checkpoint} if from_checkpoint else {}
    inv.show(inv.client().resume_job(job_id, **options))


# ----------------------------------------------------------------------------------- events


@root.group()
def events() -> None:
    """The live stream of task changes."""


@events.command("tail")
@click.option("--status", "-s", help="comma list, or `active`")
@click.option("--type", "task_type")
@click.option("--priority")
@click.option("--task", "task_id", type=int, help="one task, until it is final")
@click.option("--since", help="resume after this event id (Last-Event-ID)")
@pass_invocation
def tail(
    inv: Invocation,
    status: str | None,
    task_type: str | None,
    priority: str | None,
    task_id: int | None,
    since: str | None,
) -> None:
    """Print task changes as they happen (JSON lines with --output json). Ctrl-C ends it."""
    client = inv.client()
    if task_id is not None:
        stream = client.stream_task(task_id, last_event_id=since)
    else:
        stream = client.stream(last_event_id=since, status=status, task_type=task_type, priority=priority)
    try:
        for event in stream:
            task = event.data if isinstance(event.data, dict) else {}
            if inv.as_json:
                click.echo(json.dumps({"id": event.id, "event": event.event, "data": event.data}))
                continue
            style = {"completed": "green", "failed": "red", "cancelled": "yellow"}.get(task.get("status", ""))
            status_text = f"[{style}]{task.get('status')}[/{style}]" if style else str(task.get("status"))
            out.print(
                f"{task.get('updated_at', '')}  #{task.get('id')} {task.get('task_type')}  {status_text}"
                f"  {task.get('progress_percentage', 0)}%",
                markup=True,
            )
    except KeyboardInterrupt:
        pass


# ------------------------------------------------------------------------------------ token


@root.command()
@click.option("--brand", "-b", "brands", type=int, multiple=True, help="brand id (repeatable; default 9)")
@click.option("--role", type=click.Choice(ROLES), default="admin", show_default=True)
@click.option("--user", default="martin", show_default=True)
@click.option("--hours", type=float, default=12, show_default=True)
@click.option("--secret", envvar="JWT_SECRET", help="HS256 secret [env JWT_SECRET; default: make run's]")
@click.option("--data-dir", type=click.Path(file_okay=False), help="where make run keeps dev-jwt-secret")
def token(
    brands: tuple[int, ...], role: str, user: str, hours: float, secret: str | None, data_dir: str | None
) -> None:
    """Mint a development token (HS256 deployments only).

    export TASKHUB_TOKEN=$(taskhub token --brand 9 --role operator)"""
    try:
        key = dev_secret(secret, data_dir or os.environ.get("TASKHUB_DATA_DIR"))
    except FileNotFoundError as error:
        fail(str(error))
    click.echo(mint(key, list(brands) or [9], role=role, username=user, hours=hours))
