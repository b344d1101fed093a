"""The deployment files: generated ones are current, every Kubernetes overlay renders with real
kustomize (the pinned `kubectl kustomize`) and validates against the Kubernetes schemas, the gateway configuration passes `nginx -t`, and compose and the
Dockerfiles cover every service of the route table. No server needed."""

from __future__ import annotations

import re
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from deploy.generate import HERE as DEPLOY
from deploy.generate import dockerfiles, generated_files
from deploy.k8s.validate import EXTERNAL_SECRETS, KustomizeError, build, validate
from gateway.render import GatewayConfig, container_config, k8s_config, render
from shared.routes import ROUTES, SERVICES

from .nginx_gateway import nginx_command, requires_nginx

OVERLAYS = sorted((DEPLOY / "k8s" / "overlays").iterdir())


def test_generated_files_are_current() -> None:
    stale = [
        str(path) for path, text in generated_files().items() if not path.exists() or path.read_text() != text
    ]
    assert not stale, f"run `python -m deploy.generate` and commit: {stale}"


@pytest.mark.parametrize("overlay", OVERLAYS, ids=[o.name for o in OVERLAYS])
def test_every_overlay_renders_and_validates(overlay: Path) -> None:
    docs = build(overlay)
    has_secrets = any(d["kind"] == "Secret" for d in docs)
    assert validate(docs, set() if has_secrets else EXTERNAL_SECRETS) == []
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for service in SERVICES:
        assert {
            ("Deployment", f"{service}-web"),
            ("Deployment", f"{service}-background"),
            ("Service", service),
        } <= names
    assert {
        ("Deployment", "worker"),
        ("ScaledObject", "worker"),
        ("Deployment", "gateway"),
        ("Ingress", "taskhub"),
    } <= names
    assert all(d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace")


def test_kustomize_refusals_and_invalid_objects_are_reported(tmp_path: Path) -> None:
    """The checks can fail: kustomize's own refusal surfaces, and so does a field Kubernetes lacks."""
    (tmp_path / "kustomization.yaml").write_text("resources: [missing.yaml]\n")
    with pytest.raises(KustomizeError, match="missing.yaml"):
        build(tmp_path)
    (tmp_path / "kustomization.yaml").write_text("namespace: t\nresources: [cm.yaml]\n")
    (tmp_path / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndataa: {}\n")
    errors = validate(build(tmp_path), set())
    assert errors and all("ConfigMap/x" in error for error in errors), errors


def test_the_gateway_config_covers_the_route_table_and_never_replays_a_post() -> None:
    config = render(
        GatewayConfig(listen="127.0.0.1:1", upstreams={"core": ["127.0.0.1:2"]}, prefix_dir=Path("/tmp"))
    )
    for route in ROUTES:
        assert f"location {route.prefix} {{" in config
    assert "proxy_next_upstream error timeout;" in config and "non_idempotent" not in config
    assert "proxy_next_upstream_tries 2;" in config and "limit_req_status 429;" in config
    # a route whose service is not deployed answers 503 instead of falling through to core
    monitoring = re.search(r"location /tasks/monitoring/ \{\s*return 503;", config)
    assert monitoring


def _variants(tmp_path: Path) -> dict[str, GatewayConfig]:
    loopback = {service: ["127.0.0.1:9"] for service in SERVICES}  # Service names do not resolve here
    return {
        "make up": GatewayConfig("127.0.0.1:1", loopback, prefix_dir=tmp_path),
        "kubernetes": replace(k8s_config(), upstreams=loopback),
        "compose": replace(container_config(), upstreams=loopback),
    }


@requires_nginx
@pytest.mark.parametrize("variant", ["make up", "kubernetes", "compose"])
def test_nginx_accepts_the_generated_config(tmp_path: Path, variant: str) -> None:
    (tmp_path / "temp").mkdir()
    (tmp_path / "nginx.conf").write_text(render(_variants(tmp_path)[variant]))
    checked = subprocess.run(
        nginx_command(tmp_path, "-t"),
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stderr


def test_compose_runs_what_make_up_runs() -> None:
    compose = yaml.safe_load((DEPLOY / "compose" / "docker-compose.yml").read_text())["services"]
    for service in SERVICES:
        assert {service, f"{service}-migrate", f"{service}-background"} <= set(compose)
    assert {"worker", "scheduler", "gateway", "postgres", "rabbitmq"} <= set(compose)


def test_every_image_is_pinned_and_runs_as_non_root() -> None:
    assert set(dockerfiles()) == {*SERVICES, "worker", "scheduler", "gateway"}
    for name in dockerfiles():
        text = (DEPLOY / "docker" / f"{name}.Dockerfile").read_text()
        found = re.search(r"^FROM (\S+)", text, re.M)
        assert found, name
        base = found.group(1)
        assert re.search(r":\d+\.\d+\.\d+", base) and "latest" not in base, base
        user = re.findall(r"^USER (\S+)", text, re.M)
        assert user and user[-1] not in ("root", "0"), name


@pytest.mark.parametrize("overlay", OVERLAYS, ids=[o.name for o in OVERLAYS])
def test_every_process_without_a_web_app_serves_metrics_prometheus_scrapes(overlay: Path) -> None:
    """The background processes, the worker and the scheduler listen on TASKHUB_METRICS_PORT, the
    container declares that port, and the pod's scrape annotation names it."""
    docs = build(overlay)
    pods = {
        d["metadata"]["name"]: d["spec"]["template"]
        for d in docs
        if d["kind"] == "Deployment"
        and d["metadata"]["name"].endswith(("-background", "worker", "scheduler"))
    }
    assert {"worker", "scheduler", *(f"{s}-background" for s in SERVICES)} <= set(pods)
    for name, pod in pods.items():
        (container,) = pod["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        assert env.get("TASKHUB_METRICS_PORT") == str(ports.get("metrics")), name
        annotations = pod["metadata"].get("annotations", {})
        assert annotations.get("prometheus.io/scrape") == "true", name
        assert annotations.get("prometheus.io/port") == str(ports["metrics"]), name
