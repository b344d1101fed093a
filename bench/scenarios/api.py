"""2. API: POST /tasks/ and a filtered GET /tasks/ through nginx at a constant arrival rate
(bench/load.py, an open model), beside a trivial JSON endpoint on the same nginx + gunicorn
stack (`/docs/core/ping`): the ratio of their sustainable rates, and p50/p99 at half the peak."""

from __future__ import annotations

from collections.abc import Sequence

from ..load import LoadResult, run_load
from ..stats import percentile
from ..topology import Platform

ERROR_BUDGET = 0.01  # a rate is "sustained" when < 1 % errors and p99 under 1 s


def sustained(result: LoadResult) -> bool:
    bad = result.errors + result.dropped + sum(c for s, c in result.statuses.items() if s >= 500)
    total = result.errors + result.dropped + sum(result.statuses.values())
    return total > 0 and bad / total < ERROR_BUDGET and percentile(result.latencies_ms, 99) < 1000


def peak_rate(fire, rates: Sequence[float]) -> float:
    """The highest offered rate of `rates` (ascending) the target sustains."""
    best = 0.0
    for rate in rates:
        if not sustained(fire(rate)):
            break
        best = rate
    return best


def figures(p: Platform, rates: Sequence[float], seconds: float) -> dict[str, float]:
    headers = p.headers()
    post = lambda rate: run_load(  # noqa: E731
        f"{p.base_url}/tasks/",
        method="POST",
        rate=rate,
        duration_s=seconds,
        headers=headers,
        body=lambda i: {"task_type": "bench.api", "description": f"load {i}"},
    )
    get = lambda rate: run_load(  # noqa: E731
        f"{p.base_url}/tasks/?status=pending,running&priority=normal&ordering=-created_at",
        rate=rate,
        duration_s=seconds,
        headers=headers,
    )
    trivial = lambda rate: run_load(f"{p.base_url}/docs/core/ping", rate=rate, duration_s=seconds)  # noqa: E731
    peak_trivial = peak_rate(trivial, rates)
    peak_post = peak_rate(post, rates)
    peak_get = peak_rate(get, rates)
    half_post = post(max(1.0, peak_post / 2))
    half_get = get(max(1.0, peak_get / 2))
    return {
        "trivial_peak_rps": peak_trivial,
        "post_peak_rps": peak_post,
        "get_peak_rps": peak_get,
        "post_vs_trivial_ratio": peak_post / peak_trivial if peak_trivial else 0.0,
        "post_half_peak_p50_ms": percentile(half_post.latencies_ms, 50),
        "post_half_peak_p99_ms": percentile(half_post.latencies_ms, 99),
        "get_half_peak_p50_ms": percentile(half_get.latencies_ms, 50),
        "get_half_peak_p99_ms": percentile(half_get.latencies_ms, 99),
        "post_half_peak_errors": half_post.errors
        + half_post.dropped
        + sum(c for s, c in half_post.statuses.items() if s >= 400),
    }
