"""The Prometheus figures every service exports on /metrics (one definition, labelled by service),
and the /metrics listener of the processes that have no web app (worker, scheduler, background)."""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)

from .config import ConfigError, Settings, env_int

HTTP_REQUESTS = Counter(
    "taskhub_http_requests_total", "HTTP requests", ["service", "method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "taskhub_http_request_duration_seconds",
    "HTTP request latency",
    ["service", "method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
EVENTS_PUBLISHED = Counter(
    "taskhub_events_published_total", "Messages published (confirmed)", ["service", "routing_key"]
)
EVENTS_CONSUMED = Counter(
    "taskhub_events_consumed_total", "Events applied", ["service", "consumer", "event_type"]
)
EVENTS_DUPLICATE = Counter(
    "taskhub_events_duplicate_total", "Repeated events ignored by the inbox", ["service", "consumer"]
)
EVENTS_FAILED = Counter(
    "taskhub_events_failed_total", "Event handler failures", ["service", "consumer", "event_type"]
)
OUTBOX_BACKLOG = Gauge(
    "taskhub_outbox_backlog",
    "Outbox rows not yet published",
    ["service"],
    multiprocess_mode="max",
)
DEAD_LETTERS = Gauge(
    "taskhub_dead_letters",
    "Events a consumer parked in its queue's dead-letter queue (make dead-letters)",
    ["service", "queue"],
    multiprocess_mode="mostrecent",
)
PUBLISH_FAILURES = Counter(
    "taskhub_outbox_publish_failures_total", "Relay batches the broker refused", ["service"]
)


def registry() -> CollectorRegistry:
    """This process's figures; with PROMETHEUS_MULTIPROC_DIR, those of every process writing that
    folder (a service's gunicorn workers and its background process), summed."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        aggregated = CollectorRegistry()
        multiprocess.MultiProcessCollector(aggregated)
        return aggregated
    return REGISTRY


def render() -> tuple[bytes, str]:
    """The text exposition of `registry()`, for a web app's /metrics route."""
    return generate_latest(registry()), CONTENT_TYPE_LATEST


def serve_metrics(settings: Settings) -> int | None:
    """/metrics on TASKHUB_METRICS_PORT (bound to TASKHUB_METRICS_HOST, all interfaces by default:
    Prometheus scrapes the pod's address), served by a daemon thread, for a process with no web app
    of its own. Unset or 0: no listener (`make run` serves every figure on its one port). Returns
    the port it listens on."""
    port = env_int(settings, "TASKHUB_METRICS_PORT", 0)
    if not port:
        return None
    if not 0 < port < 65536:
        raise ConfigError(f"TASKHUB_METRICS_PORT must be a port number, got {port}")
    start_http_server(port, addr=settings.get("TASKHUB_METRICS_HOST") or "0.0.0.0", registry=registry())
    return port
