"""The Prometheus figures every service exports on /metrics (one definition, labelled by service)."""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

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
PUBLISH_FAILURES = Counter(
    "taskhub_outbox_publish_failures_total", "Relay batches the broker refused", ["service"]
)


def render() -> tuple[bytes, str]:
    """The text exposition; aggregates gunicorn workers when PROMETHEUS_MULTIPROC_DIR is set."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
