"""The comparison point of the end-to-end benchmark: Celery 5 with the same RabbitMQ, a
PostgreSQL result backend and the same worker concurrency, running a no-op task."""

from __future__ import annotations

import os

from celery import Celery

app = Celery(
    "bench",
    broker=os.environ.get("BENCH_CELERY_BROKER", "amqp://guest:guest@127.0.0.1:5672//"),
    backend=os.environ.get(
        "BENCH_CELERY_BACKEND", "db+postgresql+psycopg://postgres@127.0.0.1:5432/taskhub_bench_celery"
    ),
)
app.conf.update(
    task_default_queue=os.environ.get("BENCH_CELERY_QUEUE", "bench_noop"),
    task_acks_late=True,  # the reliable setting, as taskhub's own semantics
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    result_extended=False,
    broker_connection_retry_on_startup=True,
)


@app.task(name="bench.noop")
def noop() -> dict:
    return {}
