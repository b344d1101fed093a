"""Per-request context: the request id (X-Request-ID kept when sent, generated when not, returned
on every response), the correlation id for events, the access log line and the HTTP metrics."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import structlog
from flask import Flask, g, request

from .prometheus_metrics import HTTP_LATENCY, HTTP_REQUESTS
from .unit_of_work import correlation_id

SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
log = structlog.get_logger("taskhub.http")


def init_app(app: Flask, service: str) -> None:
    @app.before_request
    def _start() -> None:
        sent = request.headers.get("X-Request-ID", "")
        g.request_id = sent if SAFE_REQUEST_ID.match(sent) else uuid.uuid4().hex
        g.started = time.perf_counter()
        g.correlation_token = correlation_id.set(g.request_id)
        structlog.contextvars.bind_contextvars(request_id=g.request_id, service=service)

    @app.after_request
    def _finish(response: Any) -> Any:
        response.headers["X-Request-ID"] = g.get("request_id", "")
        route = request.url_rule.rule if request.url_rule else "unmatched"
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        HTTP_REQUESTS.labels(service, request.method, route, response.status_code).inc()
        HTTP_LATENCY.labels(service, request.method, route).observe(elapsed)
        if not request.path.startswith(("/healthz", "/readyz", "/metrics")):
            log.info(
                "request",
                method=request.method,
                path=request.path,
                status=response.status_code,
                duration_ms=round(elapsed * 1000, 2),
                brand_id=getattr(g.get("principal"), "brand_id", None),
            )
        return response

    @app.teardown_request
    def _clear(_exc: BaseException | None) -> None:
        token = g.pop("correlation_token", None)
        if token is not None:
            correlation_id.reset(token)
        structlog.contextvars.clear_contextvars()
