"""performance_score: 0 (poor) to 10 (excellent), derived from the record's own figures so that
it never changes after the fact (docs/monitoring.md gives the formula)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

SLOW_SECONDS = 3600.0  # an attempt this long (or longer) earns no speed points
LONG_WAIT_SECONDS = 600.0  # a queue wait this long (or longer) earns no wait points
HEAVY_MEMORY_MB = 4096.0


def _log_share(seconds: float, worst: float) -> float:
    """0 for nothing, 1 for `worst` or more, logarithmic between (10 ms and 1 s differ as much
    as 1 s and 100 s do)."""
    return min(1.0, math.log10(1 + max(0.0, seconds)) / math.log10(1 + worst))


def performance_score(
    *,
    execution_time_ms: float,
    queue_wait_time_ms: float,
    memory_usage_mb: float,
    error_count: int,
    retry_count: int,
    succeeded: bool,
) -> float:
    speed = 4.0 * (1 - _log_share(execution_time_ms / 1000, SLOW_SECONDS))
    reliability = 0.0 if not succeeded else max(0.0, 3.0 - float(error_count))
    retries = max(0.0, 1.0 - retry_count / 3)
    memory = 1.0 - min(1.0, memory_usage_mb / HEAVY_MEMORY_MB)
    wait = 1.0 - _log_share(queue_wait_time_ms / 1000, LONG_WAIT_SECONDS)
    return round(speed + reliability + retries + memory + wait, 2)


def score_of(record: Mapping[str, Any]) -> float:
    """The score of a record's figures (its columns as a mapping)."""
    return performance_score(
        execution_time_ms=float(record["execution_time_ms"] or 0),
        queue_wait_time_ms=float(record["queue_wait_time_ms"] or 0),
        memory_usage_mb=float(record["memory_usage_mb"] or 0),
        error_count=int(record["error_count"] or 0),
        retry_count=int(record["retry_count"] or 0),
        succeeded=bool(record["succeeded"]),
    )
