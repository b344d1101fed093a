"""1. and 2. End to end: no-op tasks submitted through the public API, executed, done when every
task shows `completed` in core; either one `POST /tasks/` per task from concurrent clients, or
`POST /tasks/bulk/` in batches. Beside it Celery 5 with the same broker, a PostgreSQL result
backend and the same worker concurrency, one `apply_async` per task. Both in the same run.

For each side, besides the rate and the submit->completed latency: the CPU each process used per
task (the system's processes with their children, PostgreSQL's backends for its databases and its
shared processes, RabbitMQ, the load generator), and the message budget per task (bench.budget).
The completion poll is one SQL count per half second on a connection of its own, and neither it
nor its PostgreSQL backend is counted in the system's figures."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pika
import pika.exceptions
import requests
from sqlalchemy import create_engine, text

from .. import budget, cpu
from ..observer import Observer, Waits
from ..stats import percentile
from ..topology import AMQP_URL, RUN_DIR, Platform, drop_database, fresh_database, rss_mb_of_run_dir

POLL_S = 0.5
BULK_PATH = "/tasks/bulk/"


def patience_s(n: int) -> float:
    """How long to wait for n tasks: generous (10 tasks/s), so that a slow system is measured
    rather than cut off."""
    return 120 + n / 10


# --------------------------------------------------------------------------------------------
# Submitting


def submit_one_by_one(url: str, headers: dict, n: int, clients: int) -> dict[str, float]:
    """n no-op tasks, one POST /tasks/ each, from `clients` threads: task_id -> time sent."""
    submitted: dict[str, float] = {}

    def post(count: int) -> None:
        session = requests.Session()
        for _ in range(count):
            sent = time.time()
            response = session.post(
                f"{url}/tasks/", json={"task_type": "example.noop"}, headers=headers, timeout=30
            )
            response.raise_for_status()
            submitted[response.json()["task_id"]] = sent

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(post, [n // clients] * clients))
    return submitted


def submit_in_bulk(url: str, headers: dict, n: int, batch: int, clients: int) -> dict[str, float]:
    """n no-op tasks through POST /tasks/bulk/ in batches of `batch`, from `clients` threads."""
    submitted: dict[str, float] = {}
    body = {"tasks": [{"task_type": "example.noop"}] * batch}

    def post(count: int) -> None:
        session = requests.Session()
        for _ in range(count):
            sent = time.time()
            response = session.post(f"{url}{BULK_PATH}", json=body, headers=headers, timeout=120)
            response.raise_for_status()
            created = response.json()["results"]
            if len(created) != batch:
                raise RuntimeError(f"POST {BULK_PATH} created {len(created)} of {batch}")
            submitted.update((task["task_id"], sent) for task in created)

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(post, [n // batch // clients] * clients))
    return submitted


def bulk_exists(url: str, headers: dict) -> bool:
    """An empty bulk is refused (400) by an endpoint that exists, and creates nothing."""
    response = requests.post(f"{url}{BULK_PATH}", json={"tasks": []}, headers=headers, timeout=30)
    return response.status_code not in (404, 405)


# --------------------------------------------------------------------------------------------
# Watching a run


class CountPoll:
    """One SQL query on a connection of its own; its backend is registered with the observer,
    so that PostgreSQL's figures for the system leave it out, and its queries are counted."""

    def __init__(self, url: str, sql: str, observer: Observer, **params: object):
        self.engine = create_engine(url, isolation_level="AUTOCOMMIT", pool_size=1)
        self.conn = self.engine.connect()
        observer.poller_pids.add(self.conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
        self.sql = text(sql)
        self.params = params
        self.queries = 1

    def __call__(self) -> tuple:
        self.queries += 1
        return tuple(self.conn.execute(self.sql, self.params).one())

    def rows(self, sql: str) -> list:
        self.queries += 1
        return list(self.conn.execute(text(sql), self.params).all())

    def close(self) -> None:
        self.conn.close()
        self.engine.dispose()


def observed_run(
    observer: Observer,
    submit: Callable[[], dict[str, float]],
    finished: Callable[[], int],
    deadline_s: float,
    waits: Waits,
) -> dict[str, float]:
    """Idle a while (the background rate), then submit, then wait until `finished()` reaches the
    number submitted (or the deadline), then until the queues are empty and the counters have
    caught up (`waits`)."""
    observer.mark("idle_start", counters=True)
    time.sleep(waits.idle_s)
    observer.mark("idle_end", counters=True)
    observer.mark("run_start", counters=True)
    submitted = submit()
    observer.mark("submitted")
    deadline = time.monotonic() + deadline_s
    while finished() < len(submitted) and time.monotonic() < deadline:
        time.sleep(POLL_S)
    observer.mark("done")
    observer.wait_until_settled("done", deadline_s=60, waits=waits)
    return submitted


def cpu_per_task(observer: Observer, tasks: int) -> dict[str, float]:
    """ms of CPU per task for each process group from the first submission until done; the load
    generator (the bench process while it submitted) and the poll (the bench process while it
    waited, with its PostgreSQL backend) are apart from the system's figures."""
    if not tasks:
        return {}
    run = observer.cpu_seconds("run_start", "done")
    waiting = observer.cpu_seconds("submitted", "done")
    ms = {name: run[name] * 1000 / tasks for name in observer.own}
    ms["system total"] = sum(ms.values())
    for name in ("postgresql backends", "postgresql shared", "rabbitmq"):
        ms[name] = run[name] * 1000 / tasks
    ms["load generator"] = observer.cpu_seconds("run_start", "submitted")["bench process"] * 1000 / tasks
    ms["bench poll and meter"] = (waiting["bench process"] + run["bench poller backend"]) * 1000 / tasks
    return ms


def figures_of(
    observer: Observer,
    submitted: dict[str, float],
    done: dict[str, float],
    bench_transactions: dict[str, int],
) -> dict[str, float]:
    latencies = [(done[t] - sent) * 1000 for t, sent in submitted.items() if t in done]
    span = max(done.values()) - min(submitted.values()) if done else float("nan")
    out = {
        "tasks_per_s": len(done) / span if done else 0.0,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "missing": len(submitted) - len(done),
    }
    out.update({f"cpu_ms:{k}": v for k, v in cpu_per_task(observer, len(done)).items()})
    named = budget.named(observer.per_task(len(done), bench_transactions))
    out.update({f"budget:{k}": v for k, v in named.items()})
    return out


# --------------------------------------------------------------------------------------------
# The two sides


def taskhub(p: Platform, n: int, clients: int, waits: Waits, batch: int | None = None) -> dict[str, float]:
    """One run of n no-op tasks on `p`: single POSTs, or bulk POSTs of `batch`. Only the run's
    own tasks are counted (the topology may have served others before). Empty when the bulk
    endpoint does not exist yet."""
    p.wait_for_worker()
    headers = p.headers()
    if batch is not None and not bulk_exists(p.base_url, headers):
        print(f"  POST {BULK_PATH} does not exist: not available", flush=True)
        return {}
    rss: dict[str, float] = {}

    def submit() -> dict[str, float]:
        if batch is None:
            submitted = submit_one_by_one(p.base_url, headers, n, clients)
        else:
            submitted = submit_in_bulk(p.base_url, headers, n, batch, clients)
        rss.update(rss_mb_of_run_dir(p.run_dir))  # under load: the tasks are still running
        return submitted

    observer = Observer(cpu.topology_groups(p.state), p.database_urls, [p.broker_prefix], p.metrics_dirs)
    with observer:
        since = datetime.now(UTC)
        poll = CountPoll(
            p.database_urls["core"],
            "SELECT count(*) FROM tasks WHERE created_at >= :since AND status = 'completed' AND has_metrics",
            observer,
            since=since,
        )
        submitted = observed_run(observer, submit, lambda: poll()[0], patience_s(n), waits)
        rows = poll.rows(
            "SELECT task_id, completed_at FROM tasks WHERE created_at >= :since AND status = 'completed'"
        )
        polls = poll.queries
        poll.close()
        done = {task_id: completed_at.timestamp() for task_id, completed_at in rows}
        out = figures_of(observer, submitted, done, {"core": polls})
    out.update({f"rss_mb:{name}": mb for name, mb in rss.items()})
    return out


def celery(n: int, clients: int, concurrency: int, waits: Waits) -> dict[str, float]:
    """One run of n no-op tasks through Celery: `apply_async` from `clients` threads."""
    database = f"taskhub_bench_celery{os.getpid()}"
    backend_url = fresh_database(database)
    queue = f"bench_noop_{os.getpid()}"
    env = {**os.environ, "BENCH_CELERY_BACKEND": "db+" + backend_url, "BENCH_CELERY_QUEUE": queue}
    os.environ.update({"BENCH_CELERY_BACKEND": env["BENCH_CELERY_BACKEND"], "BENCH_CELERY_QUEUE": queue})
    from ..celery_app import app, noop

    app.conf.result_backend = env["BENCH_CELERY_BACKEND"]
    app.conf.task_default_queue = queue
    app.backend.ResultSession().close()  # creates the result table, so the poll can count from the start
    command = f"celery -A bench.celery_app worker -c {concurrency} -Q {queue} -l WARNING"
    quiet = "--without-gossip --without-mingle --without-heartbeat"
    log = RUN_DIR / "logs" / "celery-worker.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as output:
        worker = subprocess.Popen(
            [sys.executable, "-m", *command.split(), *quiet.split()], env=env, stdout=output, stderr=output
        )
    try:
        _wait_for_consumer(queue)
        observer = Observer(
            {"celery worker": lambda table: table.family(worker.pid)}, {"celery": backend_url}, [queue]
        )
        with observer:
            poll = CountPoll(
                backend_url, "SELECT count(*) FROM celery_taskmeta WHERE status = 'SUCCESS'", observer
            )

            def submit() -> dict[str, float]:
                submitted: dict[str, float] = {}

                def send(count: int) -> None:
                    for _ in range(count):
                        sent = time.time()
                        submitted[noop.apply_async(queue=queue).id] = sent

                with ThreadPoolExecutor(clients) as pool:
                    list(pool.map(send, [n // clients] * clients))
                return submitted

            submitted = observed_run(observer, submit, lambda: poll()[0], patience_s(n), waits)
            rows = poll.rows("SELECT task_id, date_done FROM celery_taskmeta WHERE status = 'SUCCESS'")
            polls = poll.queries
            poll.close()
            done = {task_id: _utc(date_done) for task_id, date_done in rows}
            return figures_of(observer, submitted, done, {"celery": polls})
    finally:
        worker.terminate()
        worker.wait(30)
        _delete_queue(queue)
        drop_database(database)


def _wait_for_consumer(queue: str, timeout_s: float = 60) -> None:
    """Until the Celery worker consumes its queue (its start-up is not part of its rate)."""
    deadline = time.monotonic() + timeout_s
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        while time.monotonic() < deadline:
            channel = connection.channel()
            try:
                if channel.queue_declare(queue, passive=True).method.consumer_count > 0:
                    return
                channel.close()
            except pika.exceptions.ChannelClosedByBroker:
                pass  # not declared yet
            time.sleep(0.2)
    finally:
        connection.close()
    raise RuntimeError(f"the Celery worker did not consume {queue} within {timeout_s:.0f} s")


def _delete_queue(queue: str) -> None:
    """Celery's queue and the exchange of the same name it declared for it."""
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        channel = connection.channel()
        channel.queue_delete(queue)
        channel.exchange_delete(queue)
    finally:
        connection.close()


def _utc(moment: datetime) -> float:
    return (moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment).timestamp()
