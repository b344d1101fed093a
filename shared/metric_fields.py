"""The metric fields of a record, their types and the range a measured value may take. The same
ranges bound monitoring's metrics API, its alert thresholds, and what core takes from a worker's report."""

from __future__ import annotations

import math
from typing import Any

WEEK_MS = 7 * 24 * 3600 * 1000
BIG = 2**62

FLOAT_FIELDS = ("execution_time_ms", "memory_usage_mb", "cpu_usage_percent", "cost_usd", "queue_wait_time_ms")
INT_FIELDS = (
    "network_bytes_sent",
    "network_bytes_received",
    "disk_io_bytes",
    "api_calls_count",
    "tokens_used",
    "error_count",
    "warning_count",
    "retry_count",
)
MEASURED = FLOAT_FIELDS + INT_FIELDS  # what a worker or a client reports
NUMERIC = (*MEASURED, "performance_score")  # what lists filter and order on

RANGES: dict[str, tuple[float, float]] = {
    "execution_time_ms": (0, WEEK_MS),  # the longest task timeout (10080 minutes)
    "memory_usage_mb": (0, 1024 * 1024),  # 1 TiB
    "cpu_usage_percent": (0, 100 * 256),  # per-process percent: 100 per busy core
    "cost_usd": (0, 1_000_000),
    "queue_wait_time_ms": (0, 52 * WEEK_MS),
    "network_bytes_sent": (0, BIG),
    "network_bytes_received": (0, BIG),
    "disk_io_bytes": (0, BIG),
    "api_calls_count": (0, 10**9),
    "tokens_used": (0, 10**12),
    "error_count": (0, 10**6),
    "warning_count": (0, 10**6),
    "retry_count": (0, 1000),
    "performance_score": (0, 10),
}


def reported_value(field: str, raw: Any) -> float | int | None:
    """A value a worker reported, made safe to store (events are never refused): numbers only,
    finite, clamped into the field's range; anything else counts as not reported."""
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        return None
    low, high = RANGES[field]
    value = min(max(raw, low), high)
    return int(value) if field in INT_FIELDS else float(value)
