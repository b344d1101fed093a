"""What an alert rule may say: the fields it watches, the comparisons, the thresholds' ranges."""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

from shared.domain_errors import InvalidField

from ..metrics.fields import RANGES

METRIC_FIELDS = (
    "execution_time_ms",
    "memory_usage_mb",
    "cpu_usage_percent",
    "error_count",
    "cost_usd",
    "queue_wait_time_ms",
    "tokens_used",
    "api_calls_count",
)
CONDITIONS: dict[str, Callable[[float, float], bool]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
    "eq": operator.eq,
}
SYMBOLS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "eq": "="}
SEVERITIES = ("low", "medium", "high", "critical")


def check_rule(metric_field: str, threshold: Any) -> None:
    """400 METRIC_FIELD_INVALID / THRESHOLD_OUT_OF_RANGE, naming the field."""
    if metric_field not in METRIC_FIELDS:
        raise InvalidField(
            "metric_field",
            f"{metric_field!r} cannot be watched; use one of {list(METRIC_FIELDS)}.",
            "METRIC_FIELD_INVALID",
        )
    low, high = RANGES[metric_field]
    if not isinstance(threshold, int | float) or not math.isfinite(threshold) or not low <= threshold <= high:
        raise InvalidField(
            "threshold_value",
            f"threshold_value for {metric_field} must be a finite number from {low:g} to {high:g}.",
            "THRESHOLD_OUT_OF_RANGE",
        )


def matches(condition: str, value: float, threshold: float) -> bool:
    return CONDITIONS[condition](value, threshold)


def describe(metric_field: str, condition: str, value: float, threshold: float) -> str:
    return f"{metric_field} {value:g} {SYMBOLS[condition]} {threshold:g}"
