"""1. End to end: no-op tasks submitted through the public API by concurrent clients, executed,
results visible; beside it Celery with the same broker, a PostgreSQL result backend and the same
worker concurrency. Both figures come from the same run on the same machine."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import requests
from sqlalchemy import create_engine, text

from shared.events.envelope import parse_iso

from ..stats import percentile
from ..topology import Platform, fresh_database, platform, rss_mb_of_run_dir


def _submit_all(url: str, headers: dict, n: int, clients: int) -> dict[str, float]:
    submitted: dict[str, float] = {}

    def batch(indexes: range) -> None:
        session = requests.Session()
        for _ in indexes:
            sent = time.time()
            response = session.post(
                f"{url}/tasks/", json={"task_type": "example.noop"}, headers=headers, timeout=30
            )
            response.raise_for_status()
            submitted[response.json()["task_id"]] = sent

    per = n // clients
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(batch, [range(per) for _ in range(clients)]))
    return submitted


def _completed(p: Platform, headers: dict) -> int:
    stats = requests.get(f"{p.base_url}/tasks/queue-stats/", headers=headers, timeout=30).json()
    return stats["status_distribution"]["completed"]


def taskhub(n: int, clients: int, concurrency: int) -> dict[str, float]:
    with platform(concurrency=concurrency) as p:
        headers = p.headers()
        submitted = _submit_all(p.base_url, headers, n, clients)
        rss_under_load = rss_mb_of_run_dir()
        deadline = time.monotonic() + 60 + n / 20
        while _completed(p, headers) < len(submitted) and time.monotonic() < deadline:
            time.sleep(0.5)
        engine = create_engine(p.database_urls["core"])
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT task_id, completed_at FROM tasks WHERE status = 'completed'")
            ).all()
        engine.dispose()
    done = {task_id: completed_at.timestamp() for task_id, completed_at in rows}
    latencies = [(done[t] - sent) * 1000 for t, sent in submitted.items() if t in done]
    span = max(done.values()) - min(submitted.values()) if done else float("nan")
    return {
        "tasks_per_s": len(done) / span if done else 0.0,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "missing": len(submitted) - len(done),
        **{f"rss_mb:{name}": mb for name, mb in rss_under_load.items()},
    }


def celery(n: int, clients: int, concurrency: int) -> dict[str, float]:
    backend_url = fresh_database("taskhub_bench_celery")
    queue = f"bench_noop_{os.getpid()}"
    env = {
        **os.environ,
        "BENCH_CELERY_BACKEND": "db+" + backend_url,
        "BENCH_CELERY_QUEUE": queue,
    }
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "bench.celery_app",
            "worker",
            "-c",
            str(concurrency),
            "-Q",
            queue,
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-l",
            "WARNING",
        ],
        env=env,
    )
    os.environ.update({"BENCH_CELERY_BACKEND": env["BENCH_CELERY_BACKEND"], "BENCH_CELERY_QUEUE": queue})
    from ..celery_app import app, noop

    app.conf.result_backend = env["BENCH_CELERY_BACKEND"]
    app.conf.task_default_queue = queue
    try:
        submitted: dict[str, float] = {}

        def batch(count: int) -> None:
            for _ in range(count):
                sent = time.time()
                submitted[noop.apply_async(queue=queue).id] = sent

        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(batch, [n // clients] * clients))
        engine = create_engine(backend_url)
        deadline = time.monotonic() + 60 + n / 20
        done: dict[str, float] = {}
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                try:
                    rows = conn.execute(
                        text("SELECT task_id, date_done FROM celery_taskmeta WHERE status = 'SUCCESS'")
                    ).all()
                except Exception:
                    rows = []
            if len(rows) >= len(submitted):
                done = {tid: _utc(d) for tid, d in rows}
                break
            time.sleep(0.5)
        engine.dispose()
    finally:
        worker.terminate()
        worker.wait(30)
    latencies = [(done[t] - sent) * 1000 for t, sent in submitted.items() if t in done]
    span = max(done.values()) - min(submitted.values()) if done else float("nan")
    return {
        "tasks_per_s": len(done) / span if done else 0.0,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "missing": len(submitted) - len(done),
    }


def _utc(moment: datetime) -> float:
    from datetime import UTC

    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


__all__ = ["taskhub", "celery", "parse_iso"]
