"""5. Event convergence: no-op tasks submitted at a constant 200 tasks/s through the gateway;
for a sample of them, the delay from the task's completion (core's completed_at) to its metrics
being visible in core (has_metrics on GET /tasks/{id}/, fed by monitoring's metrics.recorded)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from shared.events.envelope import parse_iso

from ..stats import percentile
from ..topology import Platform

POLL_S = 0.02


def _follow(base: str, headers: dict, pk: int, deadline: float) -> float | None:
    session = requests.Session()
    completed_at = None
    while time.monotonic() < deadline:
        task = session.get(f"{base}/tasks/{pk}/", headers=headers, timeout=10).json()
        if completed_at is None and task.get("completed_at"):
            completed_at = parse_iso(task["completed_at"]).timestamp()
        if completed_at is not None and task.get("has_metrics"):
            return (time.time() - completed_at) * 1000
        time.sleep(POLL_S)
    return None


def run(p: Platform, rate: float, seconds: float, sample_every: int) -> dict[str, float]:
    headers = p.headers()
    delays: list[float] = []
    lost = 0
    lock = threading.Lock()
    submitter = ThreadPoolExecutor(32)
    followers = ThreadPoolExecutor(64)

    def submit(index: int) -> None:
        nonlocal lost
        response = requests.post(
            f"{p.base_url}/tasks/", json={"task_type": "example.noop"}, headers=headers, timeout=30
        )
        if index % sample_every == 0 and response.status_code == 201:
            delay = _follow(p.base_url, headers, response.json()["id"], time.monotonic() + 60)
            with lock:
                if delay is None:
                    lost += 1
                else:
                    delays.append(delay)

    start = time.monotonic()
    futures = []
    for index in range(int(rate * seconds)):
        due = start + index / rate
        time.sleep(max(0.0, due - time.monotonic()))
        pool = followers if index % sample_every == 0 else submitter
        futures.append(pool.submit(submit, index))
    for future in futures:
        future.result()
    submitter.shutdown()
    followers.shutdown()
    return {
        "p50_ms": percentile(delays, 50),
        "p99_ms": percentile(delays, 99),
        "samples": len(delays),
        "never_converged": lost,
    }
