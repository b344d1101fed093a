"""Analytics over a brand's metrics: dashboard, trends, per-type performance, anomalies and
recommendations. Sums, counts and averages come from the daily rollup (metrics/rollup.py: a few
rows per day and type instead of every record); minimum, maximum, percentiles and anomalies need
every value and read the records of the window. Everything is aggregated by the database (GROUP
BY over keys and indexes that start with brand_id); Python only shapes the aggregated rows. A
window is the last `days` UTC calendar days, today included. An empty window gives zeros and
empty series, never a division by zero. The rules are documented in docs/monitoring.md."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, false, func, or_, select
from sqlalchemy.orm import Session

from shared.events.envelope import iso, utcnow

from ..models import MetricsDaily as D
from ..models import MetricsHistogram as H
from ..models import MetricsRecord as M
from . import histogram
from .percentiles import execution_time_spread

TREND_BAND_PERCENT = 10.0  # a change of the period's second half within ±10% is "stable"
SENSITIVITY = {"low": 5.0, "medium": 3.5, "high": 2.5}  # robust z-score limits (3.5: Iglewicz-Hoaglin)
MAD_SCALE = 1.4826  # MAD -> standard deviation for normal data
MEAN_AD_SCALE = 1.2533  # mean absolute deviation -> standard deviation (when the MAD is 0)
MAX_ANOMALIES = 100
MIN_SAMPLES = 5  # recommendations never rest on fewer runs
QUEUE_WAIT_LIMIT_MS = 30_000.0
ERROR_RATE_LIMIT = 10.0
COST_SHARE_LIMIT = 40.0
MEMORY_LIMIT_MB = 1024.0
PRIORITY_ORDER = {"high": 0, "medium": 1, "low": 2}


def first_day(days: int) -> str:
    return (utcnow().date() - timedelta(days=days - 1)).isoformat()


def daily(brand_id: int, days: int, task_type: str | None = None) -> list[ColumnElement[bool]]:
    """The window on the rollup."""
    where = [D.brand_id == brand_id, D.day >= first_day(days)]
    if task_type:
        where.append(D.task_type == task_type)
    return where


def _midnight(day: str) -> datetime:
    return datetime.combine(datetime.fromisoformat(day).date(), time.min, tzinfo=UTC)


def window_start(days: int) -> datetime:
    """The window's first instant (UTC midnight of its first day), on the records."""
    return _midnight(first_day(days))


def _num(value: Any, digits: int = 2) -> float:
    return round(float(value or 0), digits)


def per_run(column: Any) -> Any:
    """The average per record of a summed column (NULL, not an error, without records)."""
    return func.sum(column) / func.nullif(func.sum(D.runs), 0)


def dashboard(session: Session, brand_id: int, days: int, task_type: str | None) -> dict[str, Any]:
    where = daily(brand_id, days, task_type)
    total, avg_ms, avg_mb, avg_cpu, cost, tokens, calls, failures = session.execute(
        select(
            func.sum(D.runs),
            per_run(D.execution_time_ms),
            per_run(D.memory_usage_mb),
            per_run(D.cpu_usage_percent),
            func.sum(D.cost_usd),
            func.sum(D.tokens_used),
            func.sum(D.api_calls_count),
            func.sum(D.failures),
        ).where(*where)
    ).one()
    total = int(total or 0)
    days_rows = session.execute(
        select(D.day, per_run(D.execution_time_ms), func.sum(D.cost_usd), per_run(D.memory_usage_mb))
        .where(*where)
        .group_by(D.day)
        .having(func.sum(D.runs) > 0)
        .order_by(D.day)
    ).all()
    top = session.execute(
        select(D.task_type, func.sum(D.cost_usd), per_run(D.cost_usd), func.sum(D.runs))
        .where(*where)
        .group_by(D.task_type)
        .having(func.sum(D.runs) > 0)
        .order_by(func.sum(D.cost_usd).desc(), D.task_type)
        .limit(10)
    ).all()
    by_priority = session.execute(
        select(D.priority, per_run(D.execution_time_ms), func.sum(D.runs))
        .where(*where)
        .group_by(D.priority)
        .having(func.sum(D.runs) > 0)
    ).all()
    return {
        "period": f"last_{days}_days",
        "summary": {
            "total_tasks": total,
            "avg_execution_time_ms": _num(avg_ms),
            "avg_memory_usage_mb": _num(avg_mb),
            "avg_cpu_usage_percent": _num(avg_cpu),
            "total_cost_usd": _num(cost, 6),
            "total_tokens_used": int(round(float(tokens or 0))),
            "total_api_calls": int(round(float(calls or 0))),
            "error_rate_percent": _num(100.0 * int(failures or 0) / total) if total else 0.0,
        },
        "trends": {
            "execution_time": [{"date": d, "avg_ms": _num(ms)} for d, ms, _, _ in days_rows],
            "cost": [{"date": d, "total_usd": _num(usd, 6)} for d, _, usd, _ in days_rows],
            "memory_usage": [{"date": d, "avg_mb": _num(mb)} for d, _, _, mb in days_rows],
        },
        "top_expensive_tasks": [
            {
                "task_type": task,
                "total_cost_usd": _num(usd, 6),
                "avg_cost_per_task": _num(avg, 6),
                "task_count": int(n),
            }
            for task, usd, avg, n in top
        ],
        "performance_by_priority": {p: {"avg_ms": _num(ms), "count": int(n)} for p, ms, n in by_priority},
    }


def _halves(summed: Any, days: int) -> tuple[Any, Any]:
    """The averages per record of a summed rollup column over the window's earlier and later half."""
    middle = (datetime.fromisoformat(first_day(days)).date() + timedelta(days=days // 2)).isoformat()

    def average(in_half: Any) -> Any:
        runs = func.sum(case((in_half, D.runs), else_=0))
        return func.sum(case((in_half, summed), else_=0)) / func.nullif(runs, 0)

    return average(D.day < middle), average(D.day >= middle)


def trend_of(early: Any, late: Any) -> tuple[str, float | None]:
    """(trend, change_percent) from the two halves' averages; no data in a half is 'stable'."""
    if early is None or late is None:
        return "stable", None
    early, late = float(early), float(late)
    if early == 0:
        return ("increasing", None) if late > 0 else ("stable", 0.0)
    change = round(100.0 * (late - early) / abs(early), 2)
    if change > TREND_BAND_PERCENT:
        return "increasing", change
    if change < -TREND_BAND_PERCENT:
        return "decreasing", change
    return "stable", change


def trends(session: Session, brand_id: int, days: int, task_type: str | None, metrics: Sequence[str]) -> dict:
    where = daily(brand_id, days, task_type)
    columns = [getattr(D, name) for name in metrics]
    days_rows = session.execute(
        select(D.day, *(per_run(c) for c in columns))
        .where(*where)
        .group_by(D.day)
        .having(func.sum(D.runs) > 0)
        .order_by(D.day)
    ).all()
    halves = session.execute(select(*(h for c in columns for h in _halves(c, days))).where(*where)).one()
    out = {}
    for index, name in enumerate(metrics):
        trend, change = trend_of(halves[2 * index], halves[2 * index + 1])
        out[name] = {
            "trend": trend,
            "change_percent": change,
            "data_points": [{"date": row[0], "value": _num(row[index + 1], 6)} for row in days_rows],
        }
    return {"period": days, "metrics": out}


def performance_by_type(session: Session, brand_id: int, days: int, min_samples: int) -> dict[str, Any]:
    early, late = _halves(D.execution_time_ms, days)
    rows = session.execute(
        select(
            D.task_type,
            func.sum(D.runs),
            per_run(D.execution_time_ms),
            per_run(D.memory_usage_mb),
            per_run(D.cost_usd),
            func.sum(D.failures),
            early,
            late,
        )
        .where(*daily(brand_id, days))
        .group_by(D.task_type)
        .having(func.sum(D.runs) >= min_samples)
        .order_by(D.task_type)
    ).all()
    if not rows:
        return {"task_types": {}}
    spread = execution_time_spread(session, brand_id, window_start(days), [row[0] for row in rows], 0.95)
    out = {}
    for task_type, n, avg_ms, avg_mb, avg_usd, failures, first, second in rows:
        n = int(n)
        figures = spread.get(task_type)
        out[task_type] = {
            "total_executions": n,
            "avg_execution_time_ms": _num(avg_ms),
            "min_execution_time_ms": _num(figures and figures.minimum),
            "max_execution_time_ms": _num(figures and figures.maximum),
            "p95_execution_time_ms": _num(figures and figures.percentile),
            "avg_memory_usage_mb": _num(avg_mb),
            "avg_cost_usd": _num(avg_usd, 6),
            "success_rate": _num(100.0 * (n - int(failures or 0)) / n),
            "trend": trend_of(first, second)[0],
        }
    return {"task_types": out}


@dataclass(frozen=True)
class Band:
    """A type's expected range of a metric: median ± limit × scale, widened to whole histogram
    buckets so that what lies outside is counted exactly from the histograms."""

    median: float
    scale: float
    low_bucket: int  # values in lower buckets are anomalies
    high_bucket: int  # and values in higher ones

    @property
    def low(self) -> float:
        return histogram.lower_edge(self.low_bucket) if self.low_bucket > 0 else 0.0

    @property
    def high(self) -> float | None:
        return histogram.upper_edge(self.high_bucket)

    def outside(self, column: Any) -> ColumnElement[bool]:
        beyond = [column < self.low] if self.low > 0 else []
        if self.high is not None:
            beyond.append(column >= self.high)
        return or_(false(), *beyond)


def _band(values: histogram.Distribution, limit: float) -> Band | None:
    median = values.quantile(0.5)
    mad = values.median_deviation(median)
    scale = MAD_SCALE * mad if mad > 0 else MEAN_AD_SCALE * values.mean_deviation(median)
    if scale <= 0:  # all values equal: nothing is unusual
        return None
    low, high = median - limit * scale, median + limit * scale
    return Band(median, scale, histogram.bucket_of(max(low, 0.0)), histogram.bucket_of(high))


def _newest_days(session: Session, brand_id: int, metric: str, days: int, bands: dict[str, Band]) -> str:
    """The first day of the shortest run of latest days that holds MAX_ANOMALIES anomalies (or all)."""
    per_day = session.execute(
        select(H.day, func.sum(H.count))
        .where(
            *histogram.window(brand_id, metric, first_day(days)),
            or_(
                *(
                    and_(H.task_type == t, or_(H.bucket < b.low_bucket, H.bucket > b.high_bucket))
                    for t, b in bands.items()
                )
            ),
        )
        .group_by(H.day)
        .having(func.sum(H.count) > 0)
        .order_by(H.day.desc())
    ).all()
    seen, since = 0, first_day(days)
    for day, count in per_day:
        seen, since = seen + int(count), day
        if seen >= MAX_ANOMALIES:
            break
    return since


def anomalies(session: Session, brand_id: int, days: int, metric: str, sensitivity: str) -> dict[str, Any]:
    """Per task type, the median and the MAD of `metric` from the per-day histograms; a value whose
    robust z-score |x - median| / (1.4826 MAD) exceeds the sensitivity's limit is an anomaly."""
    limit, column = SENSITIVITY[sensitivity], getattr(M, metric)
    bands, per_type = {}, {}
    for task_type, values in histogram.distributions(session, brand_id, metric, first_day(days)).items():
        band = _band(values, limit)
        if band is not None:
            bands[task_type] = band
            if count := values.count_outside(band.low_bucket, band.high_bucket):
                per_type[task_type] = count
    if not per_type:
        return {"anomalies_detected": 0, "anomalies": [], "recommendations": []}
    unusual = {t: bands[t] for t in per_type}
    since = _midnight(_newest_days(session, brand_id, metric, days, unusual))
    rows = session.execute(
        select(M.task_id, M.task_type, column, M.created_at)
        .where(
            M.brand_id == brand_id,
            M.created_at >= since,
            or_(*(and_(M.task_type == t, band.outside(column)) for t, band in unusual.items())),
        )
        .order_by(M.created_at.desc(), M.id.desc())
        .limit(MAX_ANOMALIES)
    ).all()
    found = []
    for task_id, task_type, value, at in rows:
        band = bands[task_type]
        median, z = band.median, abs(float(value) - band.median) / band.scale
        found.append(
            {
                "task_id": task_id,
                "task_type": task_type,
                "metric": metric,
                "value": float(value),
                "expected_range": [round(band.low, 4), round(band.high or float(value), 4)],
                "severity": "high" if z >= 3 * limit else "medium" if z >= 1.5 * limit else "low",
                "detected_at": iso(at),
                "description": (
                    f"{metric} of this {task_type} run was {float(value):g}, {z:.1f} robust standard "
                    f"deviations {'above' if float(value) > median else 'below'} the type's median of about "
                    f"{median:g} (last {days} days)."
                ),
            }
        )
    advice = [
        {
            "type": "investigate_anomalies",
            "priority": "high" if count >= 5 else "medium",
            "description": (
                f"{count} {task_type} run(s) had an unusual {metric} in the last {days} days "
                f"(median about {bands[task_type].median:g}, expected {bands[task_type].low:g}"
                f" to {bands[task_type].high:g})."
            ),
            "impact": f"{count} run(s) outside the expected range of {task_type}.",
            "implementation": f"Compare the inputs and workers of these {task_type} runs with typical ones.",
        }
        for task_type, count in sorted(per_type.items(), key=lambda item: -item[1])
    ]
    return {"anomalies_detected": int(sum(per_type.values())), "anomalies": found, "recommendations": advice}


def recommendations(session: Session, brand_id: int, days: int = 7) -> dict[str, Any]:
    """Advice derived from the window's measured figures; each one quotes the numbers behind it."""
    where = daily(brand_id, days)
    found: list[dict[str, Any]] = []
    waits = session.execute(
        select(D.priority, per_run(D.queue_wait_time_ms), func.sum(D.runs)).where(*where).group_by(D.priority)
    ).all()
    for priority, avg_wait, n in waits:
        if int(n or 0) >= MIN_SAMPLES and float(avg_wait or 0) > QUEUE_WAIT_LIMIT_MS:
            seconds = float(avg_wait) / 1000
            found.append(
                {
                    "type": "scale_workers",
                    "priority": "high" if seconds > 300 else "medium",
                    "description": f"{priority} tasks waited {seconds:.1f} s on average in the queue "
                    f"over {n} runs in the last {days} days (limit {QUEUE_WAIT_LIMIT_MS / 1000:g} s).",
                    "impact": f"About {seconds - QUEUE_WAIT_LIMIT_MS / 1000:.1f} s sooner per {priority} task.",
                    "implementation": f"Add workers consuming the {priority} queue or raise their concurrency.",
                }
            )
    per_type = session.execute(
        select(
            D.task_type,
            func.sum(D.runs),
            func.sum(D.failures),
            func.sum(D.cost_usd),
            per_run(D.memory_usage_mb),
            func.max(D.peak_memory_mb),
        )
        .where(*where)
        .group_by(D.task_type)
    ).all()
    total_cost = sum(float(row[3] or 0) for row in per_type)
    for task_type, n, failures, cost, avg_mb, max_mb in per_type:
        n, failures, cost = int(n or 0), int(failures or 0), float(cost or 0)
        if n < MIN_SAMPLES:
            continue
        rate = 100.0 * failures / n
        if rate > ERROR_RATE_LIMIT:
            found.append(
                {
                    "type": "reduce_failures",
                    "priority": "high" if rate > 25 else "medium",
                    "description": f"{task_type} failed {failures} of {n} runs ({rate:.1f}%) in the last "
                    f"{days} days (limit {ERROR_RATE_LIMIT:g}%).",
                    "impact": f"{failures} failed run(s) whose cost and retries would be saved.",
                    "implementation": f"Read the error messages of failed {task_type} tasks; "
                    "validate inputs before running or tune max_retries.",
                }
            )
        share = 100.0 * cost / total_cost if total_cost > 0 else 0.0
        if share >= COST_SHARE_LIMIT and len(per_type) > 1:
            found.append(
                {
                    "type": "optimize_cost",
                    "priority": "medium",
                    "description": f"{task_type} accounts for {share:.1f}% of the last {days} days' cost "
                    f"(${cost:.4f} of ${total_cost:.4f}, ${cost / n:.6f} per run over {n} runs).",
                    "impact": f"Each 10% saved on {task_type} saves ${cost * 0.1:.4f} per {days} days.",
                    "implementation": f"Cache or batch the external calls of {task_type}, or use a cheaper model.",
                }
            )
        if float(avg_mb or 0) > MEMORY_LIMIT_MB:
            found.append(
                {
                    "type": "reduce_memory",
                    "priority": "high" if float(max_mb or 0) > 4 * MEMORY_LIMIT_MB else "low",
                    "description": f"{task_type} used {float(avg_mb):.0f} MB on average (peak "
                    f"{float(max_mb or 0):.0f} MB) over {n} runs (limit {MEMORY_LIMIT_MB:g} MB).",
                    "impact": "Fewer workers killed for memory and more tasks per machine.",
                    "implementation": f"Stream or chunk the data {task_type} loads instead of holding it at once.",
                }
            )
    found.sort(key=lambda r: PRIORITY_ORDER[r["priority"]])
    return {"recommendations": found}
