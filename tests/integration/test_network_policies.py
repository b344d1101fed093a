"""Who may connect to whom in Kubernetes (issue 13, finding 16), read from the rendered overlays:
nothing reaches a pod unless a policy allows it; a service's HTTP port is reached by the gateway,
its internal callers and Prometheus; the gateway only by the ingress controller."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deploy.k8s.validate import build
from shared.routes import SERVICES

OVERLAYS = sorted((Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "overlays").iterdir())
CALLERS = {
    "core": {"gateway", "scheduler", "scheduling", "persistence"},
    "persistence": {"gateway", "worker"},
}


def policies(overlay: Path) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d["spec"] for d in build(overlay) if d["kind"] == "NetworkPolicy"}


def peers(rule: dict[str, Any]) -> list[dict[str, Any]]:
    return rule.get("from", [])


@pytest.mark.parametrize("overlay", OVERLAYS, ids=[o.name for o in OVERLAYS])
def test_ingress_is_denied_unless_a_policy_allows_it(overlay: Path) -> None:
    found = policies(overlay)
    assert found["default-deny-ingress"] == {"podSelector": {}, "policyTypes": ["Ingress"]}

    for service in SERVICES:
        spec = found[f"{service}-web"]
        assert spec["podSelector"]["matchLabels"] == {
            "app.kubernetes.io/name": service,
            "app.kubernetes.io/component": "web",
        }
        callers, scrapers = spec["ingress"]
        names = {p["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for p in peers(callers)}
        assert names == CALLERS.get(service, {"gateway"}), service
        assert all("namespaceSelector" not in p for p in peers(callers))  # same namespace only
        (prometheus,) = peers(scrapers)
        assert prometheus["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "monitoring"}

    (from_ingress,) = found["gateway"]["ingress"]
    assert peers(from_ingress) == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
    ]


@pytest.mark.parametrize("overlay", OVERLAYS, ids=[o.name for o in OVERLAYS])
def test_prometheus_alone_reaches_the_metrics_port_of_every_process_without_a_web_app(overlay: Path) -> None:
    spec = policies(overlay)["metrics"]
    (selector,) = spec["podSelector"]["matchExpressions"]
    assert selector["key"] == "app.kubernetes.io/component" and selector["operator"] == "In"
    assert set(selector["values"]) == {"background", "worker", "scheduler"}
    (rule,) = spec["ingress"]
    (prometheus,) = peers(rule)
    assert prometheus["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "monitoring"}
    assert prometheus["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus"}
    assert rule["ports"] == [{"protocol": "TCP", "port": "metrics"}]
