"""5. Event convergence, through the public API: no-op tasks submitted at a constant rate through
the gateway (an open model, bench.load); for every one of them, the time from its completion
(core's `completed_at`) until core's filters return it: `GET /tasks/?has_metrics=true&
execution_time__gte=0`, which needs the metrics monitoring recorded for it.

One watcher asks those filters, about ten times a second, for the tasks still unseen, narrowed to
their creation times (`created_after`/`created_before`, at most 100 of the run's tasks a
question, the oldest first), and takes the moment an answer arrives as the moment the task became
visible: an upper bound, late by at most a round (~0.1 s plus a request). Its questions are the
only load the measurement adds (a few filtered GETs a second); nothing polls each task."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import aiohttp

from ..load import at_constant_rate
from ..stats import percentile
from ..topology import Platform

ROUND_S = 0.1
WINDOW = 100  # tasks of the run per question: one page of the list
MAX_QUESTIONS = 5  # per round; under a backlog the oldest unseen tasks are asked for first
FILTERS = {"has_metrics": "true", "execution_time__gte": "0", "ordering": "created_at", "page_size": "100"}


@dataclass
class Watch:
    created: dict[str, datetime] = field(default_factory=dict)  # task_id -> created_at
    delays_ms: dict[str, float] = field(default_factory=dict)  # task_id -> seen - completed_at
    errors: int = 0  # submissions that failed
    look_errors: int = 0  # questions that failed (counted, asked again next round)

    def unseen(self) -> list[tuple[datetime, str]]:
        return sorted((at, t) for t, at in self.created.items() if t not in self.delays_ms)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _windows(unseen: list[tuple[datetime, str]]) -> list[tuple[datetime, datetime]]:
    """Creation-time ranges covering the oldest unseen tasks, each holding at most WINDOW of them."""
    out = []
    for first in range(0, min(len(unseen), WINDOW * MAX_QUESTIONS), WINDOW):
        chunk = unseen[first : first + WINDOW]
        # the API shows milliseconds: the last task may have been created up to 1 ms later
        out.append((chunk[0][0], chunk[-1][0] + timedelta(microseconds=999)))
    return out


async def _look(
    session: aiohttp.ClientSession, base: str, watch: Watch, low: datetime, high: datetime
) -> None:
    params = {**FILTERS, "created_after": _iso(low), "created_before": _iso(high)}
    url: str | None = f"{base}/tasks/"
    while url:
        async with session.get(url, params=params) as response:
            body = await response.json()
            seen = time.time()
        for task in body["results"]:
            fresh = task["task_id"] in watch.created and task["task_id"] not in watch.delays_ms
            if fresh and task.get("completed_at"):
                watch.delays_ms[task["task_id"]] = (
                    seen - datetime.fromisoformat(task["completed_at"]).timestamp()
                ) * 1000
        url, params = body.get("next"), {}  # `next` keeps every other parameter


async def _watch(session: aiohttp.ClientSession, base: str, watch: Watch, stop: asyncio.Event) -> None:
    while not stop.is_set():
        started = time.monotonic()
        for low, high in _windows(watch.unseen()):
            try:
                await _look(session, base, watch, low, high)
            except (TimeoutError, aiohttp.ClientError, ValueError, KeyError):
                watch.look_errors += 1
        await asyncio.sleep(max(0.0, ROUND_S - (time.monotonic() - started)))


async def _run(p: Platform, rate: float, seconds: float, drain_s: float) -> tuple[Watch, float, int]:
    watch = Watch()
    headers = p.headers()
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:

        async def submit(index: int, due: float) -> None:
            try:
                async with session.post(
                    f"{p.base_url}/tasks/", json={"task_type": "example.noop"}
                ) as response:
                    body = await response.json()
                if response.status != 201:
                    raise RuntimeError(response.status)
                watch.created[body["task_id"]] = datetime.fromisoformat(body["created_at"])
            except Exception:
                watch.errors += 1

        stop = asyncio.Event()
        watcher = asyncio.create_task(_watch(session, p.base_url, watch, stop))
        dropped = await at_constant_rate(rate, seconds, submit, max_in_flight=512)
        submitted_at = time.monotonic()
        while watch.unseen() and time.monotonic() - submitted_at < drain_s:
            await asyncio.sleep(ROUND_S)
        drained_after = time.monotonic() - submitted_at
        stop.set()
        await watcher
    return watch, drained_after, dropped


def run(p: Platform, rate: float, seconds: float, drain_s: float) -> dict[str, float]:
    """Submit at `rate` for `seconds`, then wait up to `drain_s` for every task to converge."""
    p.wait_for_worker()
    watch, drained_after, dropped = asyncio.run(_run(p, rate, seconds, drain_s))
    delays = list(watch.delays_ms.values())
    return {
        "p50_ms": percentile(delays, 50),
        "p99_ms": percentile(delays, 99),
        "max_ms": max(delays, default=float("nan")),
        "tasks": len(watch.created),
        "never_converged": len(watch.created) - len(delays),
        "drain_s": drained_after,
        "submit_errors": watch.errors + dropped,
        "watch_errors": watch.look_errors,
    }
