"""deploy/observability/: the Prometheus alert rules are valid rule files (as far as can be checked
without promtool: the file's structure, durations, label names, and every expression parsed by a
PromQL parser), and the rules and the Grafana dashboard use only metrics, and labels of them, that
taskhub's processes really export. No server needed."""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from prometheus_client import REGISTRY

from shared.prometheus_metrics import SCRAPED_GAUGES
from shared.routes import SERVICES

HERE = Path(__file__).resolve().parents[2] / "deploy" / "observability"
RULES = HERE / "prometheus-rules.yaml"
DASHBOARD = HERE / "grafana-dashboard.json"

# What every taskhub process imports: its figures are defined at import time.
PROCESS_MODULES = [
    "services.worker.__main__",
    "services.scheduling.scheduler",
    "shared.run_service",
    *(f"services.{service}.app" for service in SERVICES),
]
# Labels Prometheus adds to every scraped series (target labels), and a histogram's buckets.
TARGET_LABELS = {"job", "instance", "namespace", "pod", "container"}
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
}
# Prometheus: rule-file keys (pkg/rulefmt), durations (model.ParseDuration), label names.
GROUP_KEYS = {"name", "interval", "limit", "query_offset", "labels", "rules"}
ALERT_KEYS = {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
RECORD_KEYS = {"record", "expr", "labels"}
DURATION = re.compile(r"^(?=\d)(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?$")
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


def exported() -> dict[str, set[str]]:
    """{series name: its label names} of every metric taskhub's processes define (their registry's
    and the gauges their web apps compute on scrape)."""
    for module in PROCESS_MODULES:
        importlib.import_module(module)
    series: dict[str, set[str]] = {}
    for collector in set(REGISTRY._names_to_collectors.values()):  # noqa: SLF001 - the only listing
        kind, name = getattr(collector, "_type", None), getattr(collector, "_name", "")
        if kind not in SUFFIXES or not name.startswith("taskhub_"):
            continue
        labels = set(getattr(collector, "_labelnames", ()))
        for suffix in SUFFIXES[kind]:
            series[name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    for gauge in SCRAPED_GAUGES.values():  # read by a web app's collector on scrape, in no registry
        if gauge.name.startswith("taskhub_"):
            series[gauge.name] = set(gauge.labels)
    return series


def nodes(expr: Any) -> Iterator[Any]:
    yield expr
    for attribute in ("lhs", "rhs", "expr", "param", "vector_selector"):
        child = getattr(expr, attribute, None) if hasattr(type(expr), attribute) else None
        if child is not None:
            yield from nodes(child)
    if isinstance(expr, promql_parser.Call):
        for argument in expr.args:
            yield from nodes(argument)


def used(promql: str) -> dict[str, set[str]]:
    """{metric name: label names it is matched or grouped on} of a PromQL expression."""
    found: dict[str, set[str]] = {}
    tree = promql_parser.parse(promql)
    grouping: set[str] = set()
    for node in nodes(tree):
        if isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            grouping |= set(node.modifier.labels)
        if isinstance(node, promql_parser.VectorSelector):
            assert node.name, f"a selector without a metric name: {promql}"
            found.setdefault(node.name, set()).update(m.name for m in node.matchers.matchers)
    for labels in found.values():
        labels |= grouping  # a `by (label)` must exist on the metrics it aggregates
    return found


def unknown(promql: str, series: dict[str, set[str]]) -> list[str]:
    problems = []
    for name, labels in used(promql).items():
        if name not in series:
            problems.append(f"{name} is not exported")
        elif missing := labels - series[name] - TARGET_LABELS:
            problems.append(f"{name} has no label {sorted(missing)}")
    return problems


def rule_expressions() -> list[tuple[str, str]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [
        (rule.get("alert") or rule["record"], rule["expr"]) for group in groups for rule in group["rules"]
    ]


def dashboard_expressions() -> list[tuple[str, str]]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [(p["title"], t["expr"]) for p in panels for t in p.get("targets", [])]


def test_the_checker_catches_a_metric_or_label_nobody_exports() -> None:
    series = exported()
    assert unknown('sum by (queue) (rate(taskhub_worker_attempts_total{outcome="failed"}[5m]))', series) == [
        "taskhub_worker_attempts_total has no label ['queue']"
    ]
    assert unknown("taskhub_not_a_metric > 0", series) == ["taskhub_not_a_metric is not exported"]
    assert (
        unknown(
            "histogram_quantile(0.9, sum by (le) (rate(taskhub_http_request_duration_seconds_bucket[5m])))",
            series,
        )
        == []
    )
    with pytest.raises(ValueError):
        promql_parser.parse("sum(rate(taskhub_worker_attempts_total[5m])")


def test_the_rule_file_is_valid_prometheus_rule_syntax() -> None:
    document = yaml.safe_load(RULES.read_text())
    assert set(document) == {"groups"}
    names = [group["name"] for group in document["groups"]]
    assert len(names) == len(set(names)), "group names must be unique"
    for group in document["groups"]:
        assert set(group) <= GROUP_KEYS and group["rules"], group["name"]
        for rule in group["rules"]:
            keys = ALERT_KEYS if "alert" in rule else RECORD_KEYS
            assert set(rule) <= keys and ("alert" in rule) != ("record" in rule), rule
            if "record" in rule:
                assert METRIC_NAME.match(rule["record"]), rule["record"]
            assert LABEL_NAME.match(rule.get("alert", "x")), rule["alert"]
            promql_parser.parse(rule["expr"])  # raises on a syntax error
            for key in ("for", "keep_firing_for"):
                if key in rule:
                    assert DURATION.match(rule[key]), f"{rule['alert']}: {key}: {rule[key]!r}"
            for key in ("labels", "annotations"):
                for name, value in rule.get(key, {}).items():
                    assert LABEL_NAME.match(name) and isinstance(value, str), (rule.get("alert"), name)
                    assert value.count("{{") == value.count("}}"), f"unbalanced template in {name}"
            assert rule.get("labels", {}).get("severity") in (None, "warning", "critical")


@pytest.mark.parametrize("source", ["rules", "dashboard"])
def test_every_metric_used_is_exported_by_taskhub(source: str) -> None:
    series = exported()
    expressions = rule_expressions() if source == "rules" else dashboard_expressions()
    assert expressions
    problems = [f"{title}: {p}" for title, expr in expressions for p in unknown(expr, series)]
    assert not problems, problems


def test_the_figures_an_operator_watches_are_graphed_and_alerted_on() -> None:
    """queue depth, oldest pending age, failure rate, dead letters, worker heartbeats, scheduler lag."""
    watched = {
        "taskhub_work_queue_ready_messages",
        "taskhub_oldest_awaiting_dispatch_age_seconds",
        "taskhub_worker_attempts_total",
        "taskhub_tasks_dead_lettered_total",
        "taskhub_dead_letters",
        "taskhub_workers_live",
        "taskhub_worker_last_heartbeat_timestamp_seconds",
        "taskhub_scheduler_fire_delay_seconds_bucket",
    }
    for expressions in (rule_expressions(), dashboard_expressions()):
        names = {name for _, expr in expressions for name in used(expr)}
        assert watched <= names, watched - names


def test_the_dashboard_is_a_grafana_dashboard() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["targets"] and all(t["expr"] and t["refId"] for t in panel["targets"]), panel[
                "title"
            ]
            assert panel["datasource"]["uid"] == "${datasource}"
