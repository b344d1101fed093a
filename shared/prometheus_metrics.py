"""The Prometheus figures every service exports on /metrics (one definition, labelled by service),
the /metrics listener of the processes that have no web app (worker, scheduler, background), and
the figures a web app reads from its database or the broker when /metrics is scraped
(`ScrapedFigures`).

A process keeps the figures of what it does (requests, events, publishes) as counters and gauges,
written to the multiprocess folder under gunicorn. What the platform's state says (queue depths,
due tasks, dead letters) is read on scrape instead, never on a timer (nothing queries the database
or the broker when nothing changed): a custom collector of the web app, which no multiprocess file
holds, so one scrape gives each such figure once. In Kubernetes the web pods export them, not the
background pods (whose listener renders only their own process's figures).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

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
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from .config import ConfigError, Settings, env_int

log = logging.getLogger(__name__)

# How long a read made for one scrape serves the next ones: several scrapes in a row (two
# Prometheus servers, a dashboard refresh) cost one read, and a broker or database that is away is
# not asked again on every scrape.
SCRAPE_CACHE_SECONDS = 5.0

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


def registry() -> CollectorRegistry:
    """This process's figures; with PROMETHEUS_MULTIPROC_DIR, those of every process writing that
    folder (a service's gunicorn workers and its background process), summed."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        aggregated = CollectorRegistry()
        multiprocess.MultiProcessCollector(aggregated)
        return aggregated
    return REGISTRY


def render(scraped: Iterable[Collector] = ()) -> tuple[bytes, str]:
    """The text exposition of `registry()` and of the app's `scraped` figures (read by this
    process alone, at this scrape), for a web app's /metrics route."""
    return generate_latest(_Joined([registry(), *scraped])), CONTENT_TYPE_LATEST


class _Joined(Collector):
    def __init__(self, parts: list[Collector]) -> None:
        self.parts = parts

    def collect(self) -> Iterator[Metric]:
        for part in self.parts:
            yield from part.collect()


@dataclass(frozen=True)
class ScrapedGauge:
    """The definition of a gauge computed on scrape (its name, help and labels, fixed here once:
    dashboards and alert rules name them)."""

    name: str
    documentation: str
    labels: tuple[str, ...] = ()

    def family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(self.name, self.documentation, labels=list(self.labels))


# Every gauge computed on scrape, by name: what the processes export besides REGISTRY's metrics
# (tests/integration/test_observability.py checks the dashboards and rules against both).
SCRAPED_GAUGES: dict[str, ScrapedGauge] = {}


def scraped_gauge(name: str, documentation: str, labels: tuple[str, ...] = ()) -> ScrapedGauge:
    gauge = SCRAPED_GAUGES[name] = ScrapedGauge(name, documentation, labels)
    return gauge


class ScrapedFigures(Collector):
    """Figures `read` from the database or the broker when /metrics is scraped. A read serves
    the scrapes of the next SCRAPE_CACHE_SECONDS; a read that fails (the broker or the database
    away) leaves these figures out of the scrape, which still answers, and is logged at warning
    once until a read works again. `what` names the figures in the logs."""

    def __init__(
        self,
        what: str,
        read: Callable[[], list[Metric]],
        *,
        cache_seconds: float = SCRAPE_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what, self.read = what, read
        self.cache_seconds, self.clock = cache_seconds, clock
        self._lock = threading.Lock()  # gunicorn's threads scrape at once: one of them reads
        self._figures: list[Metric] = []
        self._fresh_until: float | None = None
        self._failing = False

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            if self._fresh_until is None or self.clock() >= self._fresh_until:
                self._figures = self._read()
                self._fresh_until = self.clock() + self.cache_seconds
            figures = self._figures
        yield from figures

    def _read(self) -> list[Metric]:
        try:
            figures = self.read()
        except Exception as exc:  # noqa: BLE001 - a scrape reports what it can, it never fails
            if not self._failing:
                log.warning("figures left out of /metrics: %s unavailable: %r", self.what, exc)
            self._failing = True
            return []
        if self._failing:
            log.info("figures back on /metrics: %s", self.what)
        self._failing = False
        return figures


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
