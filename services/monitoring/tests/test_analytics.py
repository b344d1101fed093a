"""Analytics: correct on an empty database, figures computed per brand, a true p95, trends,
robust anomalies and recommendations that quote the measured numbers."""

from __future__ import annotations

import random
import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from services.monitoring.metrics import histogram
from services.monitoring.models import MetricsHistogram as H
from shared.events.envelope import utcnow
from shared.testing.fixtures import OTHER_BRAND

URL = "/tasks/monitoring/metrics/"
ANALYTICS = ["dashboard/", "trends/", "performance-by-type/", "anomalies/", "recommendations/"]


def get(client, auth, path, brand=None):
    response = client.get(
        URL + path, headers=auth.headers(role="viewer", **({"brand": brand} if brand else {}))
    )
    assert response.status_code == 200, response.json
    return response.json


def test_every_analytics_view_answers_on_an_empty_database(client, auth):
    dashboard = get(client, auth, "dashboard/")
    assert dashboard["summary"] == {
        "total_tasks": 0,
        "avg_execution_time_ms": 0.0,
        "avg_memory_usage_mb": 0.0,
        "avg_cpu_usage_percent": 0.0,
        "total_cost_usd": 0.0,
        "total_tokens_used": 0,
        "total_api_calls": 0,
        "error_rate_percent": 0.0,
    }
    assert dashboard["trends"] == {"execution_time": [], "cost": [], "memory_usage": []}
    assert dashboard["top_expensive_tasks"] == [] and dashboard["performance_by_priority"] == {}
    trends = get(client, auth, "trends/?metric=execution_time_ms")
    assert trends == {
        "period": 30,
        "metrics": {"execution_time_ms": {"trend": "stable", "change_percent": None, "data_points": []}},
    }
    assert get(client, auth, "performance-by-type/") == {"task_types": {}}
    assert get(client, auth, "anomalies/") == {
        "anomalies_detected": 0,
        "anomalies": [],
        "recommendations": [],
    }
    assert get(client, auth, "recommendations/") == {"recommendations": []}


def test_dashboard_figures_and_brand_isolation(client, auth, feed):
    feed.run(
        "seo.analysis",
        execution_time_ms=100.0,
        memory_usage_mb=10,
        cpu_usage_percent=20,
        cost_usd=0.5,
        tokens_used=10,
        api_calls_count=2,
    )
    feed.run(
        "ai.content",
        execution_time_ms=300.0,
        memory_usage_mb=30,
        cpu_usage_percent=40,
        cost_usd=1.5,
        tokens_used=30,
        api_calls_count=4,
    )
    feed.run(
        "ai.content",
        ok=False,
        execution_time_ms=200.0,
        memory_usage_mb=20,
        cpu_usage_percent=30,
        cost_usd=1.0,
    )
    feed.run("ai.content", brand=OTHER_BRAND, execution_time_ms=99999.0, cost_usd=1000.0)
    dashboard = get(client, auth, "dashboard/?days=30")
    assert dashboard["period"] == "last_30_days"
    assert dashboard["summary"] == {
        "total_tasks": 3,
        "avg_execution_time_ms": 200.0,
        "avg_memory_usage_mb": 20.0,
        "avg_cpu_usage_percent": 30.0,
        "total_cost_usd": 3.0,
        "total_tokens_used": 40,
        "total_api_calls": 6,
        "error_rate_percent": 33.33,
    }
    [day] = dashboard["trends"]["cost"]
    assert day == {"date": utcnow().date().isoformat(), "total_usd": 3.0}
    assert dashboard["top_expensive_tasks"][0] == {
        "task_type": "ai.content",
        "total_cost_usd": 2.5,
        "avg_cost_per_task": 1.25,
        "task_count": 2,
    }
    assert dashboard["performance_by_priority"] == {"normal": {"avg_ms": 200.0, "count": 3}}
    only_seo = get(client, auth, "dashboard/?task_type=seo.analysis")["summary"]
    assert (only_seo["total_tasks"], only_seo["total_cost_usd"]) == (1, 0.5)
    assert get(client, auth, "dashboard/", brand=OTHER_BRAND)["summary"]["total_cost_usd"] == 1000.0
    # every view counts the caller's brand only
    assert get(client, auth, "performance-by-type/")["task_types"]["ai.content"]["total_executions"] == 2
    assert (
        get(client, auth, "performance-by-type/", brand=OTHER_BRAND)["task_types"]["ai.content"][
            "max_execution_time_ms"
        ]
        == 99999.0
    )
    points = get(client, auth, "trends/?metric=cost_usd")["metrics"]["cost_usd"]["data_points"]
    assert [p["value"] for p in points] == [1.0]  # (0.5 + 1.5 + 1.0) / 3 runs of brand 9


def test_performance_by_type_has_a_true_p95(client, auth, feed):
    for ms in range(100, 2100, 100):  # 100, 200, ... 2000 (20 runs)
        feed.run("ai.content", execution_time_ms=float(ms), ok=ms != 2000)
    feed.run("seo.analysis", execution_time_ms=50.0)
    types = get(client, auth, "performance-by-type/?min_samples=2")["task_types"]
    assert list(types) == ["ai.content"]  # seo.analysis has fewer samples
    ai = types["ai.content"]
    assert ai["total_executions"] == 20
    assert (ai["min_execution_time_ms"], ai["max_execution_time_ms"], ai["avg_execution_time_ms"]) == (
        100.0,
        2000.0,
        1050.0,
    )
    assert ai["p95_execution_time_ms"] == 1905.0  # percentile_cont(0.95): 1900 + 0.05 * 100
    assert (ai["success_rate"], ai["trend"]) == (95.0, "stable")


def percentile_cont(values, fraction):
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    lower = int(position)
    upper = ordered[min(lower + 1, len(ordered) - 1)]
    return ordered[lower] + (upper - ordered[lower]) * (position - lower)


def test_min_max_p95_stay_exact_over_days_and_after_corrections(client, auth, feed):
    """The histograms only guide the search: the figures equal a sort of the window's values,
    also after records are corrected and deleted, and older days stay out of the window."""
    rng = random.Random(7)
    kept = {}
    for n in range(240):
        value = round(rng.lognormvariate(7, 1.2), 3)
        task = feed.run(
            "seo.export", execution_time_ms=value, at=utcnow() - timedelta(days=n % 20, minutes=n)
        )
        kept[task["task_id"]] = value
    for value in (10.0**7, 0.5):  # outside the 30-day window: neither max nor min
        feed.run("seo.export", execution_time_ms=value, at=utcnow() - timedelta(days=45))

    def figures():
        return get(client, auth, "performance-by-type/")["task_types"]["seo.export"]

    def expected():
        values = list(kept.values())
        return (
            len(values),
            round(min(values), 2),
            round(max(values), 2),
            round(percentile_cont(values, 0.95), 2),
        )

    shown = figures()
    actual = ("total_executions", "min_execution_time_ms", "max_execution_time_ms", "p95_execution_time_ms")
    assert tuple(shown[k] for k in actual) == expected()
    records = client.get(URL + "?task_type=seo.export&page_size=100", headers=auth.headers()).json["results"]
    for record in records[:30]:  # corrections move values between buckets
        value = round(rng.uniform(0, 50_000), 3)
        item = f"{URL}{record['id']}/"
        assert (
            client.patch(item, json={"execution_time_ms": value}, headers=auth.headers()).status_code == 200
        )
        kept[record["base_task"]["task_id"]] = value
    for record in records[30:40]:
        assert (
            client.delete(f"{URL}{record['id']}/", headers=auth.headers(role="operator")).status_code == 204
        )
        kept.pop(record["base_task"]["task_id"], None)
    shown = figures()
    assert tuple(shown[k] for k in actual) == expected()


def test_histograms_rebuilt_from_the_records_equal_the_ones_kept_on_the_way(client, container, feed):
    """Migration 0003 (and a bulk load) count existing records with the same buckets as the
    incremental upkeep."""
    rng = random.Random(3)
    for n in range(60):
        feed.run(
            rng.choice(["seo.analysis", "ai.content"]),
            execution_time_ms=rng.uniform(0, 10_000),
            cost_usd=rng.choice([0.0, 0.001, 0.25]),
            tokens_used=rng.randrange(0, 5000),
            at=utcnow() - timedelta(days=n % 3),
        )

    def snapshot():
        with container.ctx.engine.connect() as conn:
            rows = conn.execute(select(H).where(H.count != 0)).all()
        return {
            (r.brand_id, r.metric, r.day, r.task_type, r.bucket): (r.count, pytest.approx(r.total))
            for r in rows
        }

    kept = snapshot()
    with container.ctx.engine.begin() as conn:
        histogram.rebuild(conn)
    assert snapshot() == kept and len(kept) > 60


def test_trends_compare_the_two_halves_of_the_period(client, auth, feed):
    for days_ago, ms, cost in ((20, 100.0, 1.0), (18, 100.0, 1.0), (3, 300.0, 1.0), (1, 300.0, 1.02)):
        feed.run(execution_time_ms=ms, cost_usd=cost, at=utcnow() - timedelta(days=days_ago))
    metrics = get(client, auth, "trends/?days=30&metric=execution_time_ms,cost_usd")["metrics"]
    assert (metrics["execution_time_ms"]["trend"], metrics["execution_time_ms"]["change_percent"]) == (
        "increasing",
        200.0,
    )
    assert metrics["cost_usd"]["trend"] == "stable"
    assert len(metrics["execution_time_ms"]["data_points"]) == 4
    assert get(client, auth, "trends/?days=7&metric=execution_time_ms")["metrics"]["execution_time_ms"][
        "data_points"
    ] == [{"date": (utcnow() - timedelta(days=d)).date().isoformat(), "value": 300.0} for d in (3, 1)]


def test_anomalies_use_median_and_mad_per_task_type(client, auth, feed):
    for ms in (100, 105, 95, 110, 90, 102, 98, 101, 99):
        feed.run("seo.analysis", execution_time_ms=float(ms))
    outlier = feed.run("seo.analysis", execution_time_ms=5000.0)
    for ms in (4000, 4100, 3900, 4050):  # another type: 4000 ms is its normal
        feed.run("ai.content", execution_time_ms=float(ms))
    found = get(client, auth, "anomalies/?sensitivity=medium")
    assert found["anomalies_detected"] == 1
    [anomaly] = found["anomalies"]
    assert (anomaly["task_id"], anomaly["metric"], anomaly["value"], anomaly["severity"]) == (
        outlier["task_id"],
        "execution_time_ms",
        5000.0,
        "high",
    )
    low, high = anomaly["expected_range"]
    assert low < 100.5 < high < 5000  # around the median of seo.analysis (100.5)
    [advice] = found["recommendations"]
    assert advice["description"].startswith("1 seo.analysis run(s) had an unusual execution_time_ms")
    assert get(client, auth, "anomalies/", brand=OTHER_BRAND)["anomalies_detected"] == 0


def test_anomalies_count_exactly_what_lies_outside_the_expected_range(client, auth, feed):
    rng = random.Random(11)
    values = {}
    for n in range(300):
        value = round(rng.lognormvariate(6, 0.25), 3)
        values[
            feed.run("seo.analysis", execution_time_ms=value, at=utcnow() - timedelta(hours=n))["task_id"]
        ] = value
    for spike in (20_000.0, 35_000.0, 1.0):  # far outside, both sides
        values[feed.run("seo.analysis", execution_time_ms=spike)["task_id"]] = spike
    found = get(client, auth, "anomalies/?sensitivity=medium&days=30")
    low, high = found["anomalies"][0]["expected_range"]
    outside = {task_id for task_id, value in values.items() if value < low or value >= high}
    assert {20_000.0, 35_000.0, 1.0} <= {values[t] for t in outside}
    assert found["anomalies_detected"] == len(outside) < 20
    assert {a["task_id"] for a in found["anomalies"]} == outside
    assert 0 < low < 403 < high < 1000  # exp(6) = 403 is the median of the log-normal runs


def test_recommendations_quote_the_measured_figures(client, auth, feed):
    for i in range(5):
        feed.run("seo.analysis", ok=i >= 2, queue_wait_time_ms=60_000.0, cost_usd=0.01)
        feed.run("ai.content", memory_usage_mb=2048.0, cost_usd=2.0, queue_wait_time_ms=60_000.0)
    advice = {r["type"]: r for r in get(client, auth, "recommendations/")["recommendations"]}
    assert set(advice) == {"scale_workers", "reduce_failures", "optimize_cost", "reduce_memory"}
    assert "60.0 s" in advice["scale_workers"]["description"]
    assert "2 of 5 runs (40.0%)" in advice["reduce_failures"]["description"]
    assert "ai.content accounts for 99.5%" in advice["optimize_cost"]["description"]
    assert "2048 MB" in advice["reduce_memory"]["description"]
    for item in advice.values():
        assert set(item) == {"type", "priority", "description", "impact", "implementation"}
        assert re.search(r"\d", item["description"])
    assert get(client, auth, "recommendations/", brand=OTHER_BRAND) == {"recommendations": []}


@pytest.mark.parametrize(
    "query, field",
    [
        ("dashboard/?days=14", "days"),
        ("trends/?metric=color", "metric"),
        ("trends/?days=0", "days"),
        ("performance-by-type/?min_samples=0", "min_samples"),
        ("anomalies/?sensitivity=extreme", "sensitivity"),
        ("anomalies/?metric=color", "metric"),
        ("recommendations/?days=x", "days"),
    ],
)
def test_bad_parameters_are_400_naming_them(client, auth, query, field):
    response = client.get(URL + query, headers=auth.headers())
    assert response.status_code == 400 and field in response.json["field_errors"]


@pytest.mark.parametrize("path", ANALYTICS)
def test_analytics_need_a_brand_the_token_lists(client, auth, path):
    response = client.get(URL + path, headers={**auth.headers(), "X-Brand-ID": "10"})
    assert (response.status_code, response.json["error_code"]) == (403, "BRAND_ACCESS_DENIED")
