"""The role matrix (shared.permissions) is the one place roles are decided: every route of every
service has its row, and what it says is what a caller gets."""

from __future__ import annotations

import importlib
from typing import Any

import pytest

from shared.events.inprocess_bus import InProcessBus
from shared.permissions import ROLE_MATRIX, action_of, rule_for
from shared.routes import service_path
from shared.testing.fixtures import make_settings

SERVICES = ("core", "monitoring", "persistence", "scheduling")


def _app(service: str, tmp_path: Any) -> Any:
    container = importlib.import_module(f"services.{service}.container").bootstrap(
        make_settings(service, f"sqlite:///{tmp_path / service}.db"), bus=InProcessBus(prefix="t.")
    )
    return importlib.import_module(f"services.{service}.app").create_app(container=container)


@pytest.mark.parametrize("service", SERVICES)
def test_every_route_has_its_row(service, tmp_path):
    app = _app(service, tmp_path)
    missing = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/tasks/"):
            continue
        blueprint = rule.endpoint.split(".")[0]
        prefix = service_path(service, app.blueprints[blueprint].url_prefix)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            action = action_of(rule.rule, prefix, method)
            if rule_for(blueprint, action) is None:
                missing.append(f"{method} {rule.rule} -> {blueprint}:{action}")
    assert not missing, "routes without a row in shared.permissions.ROLE_MATRIX: " + ", ".join(missing)


def test_reads_are_for_viewers_and_configuration_deletes_for_admins():
    for resource, actions in ROLE_MATRIX.items():
        assert actions["read"].role == "viewer", resource
    for resource in ("periodic_tasks", "cron_jobs", "calendars", "alerts", "workers"):
        assert ROLE_MATRIX[resource]["delete"].role == "admin", resource


@pytest.mark.parametrize(
    ("rule", "method", "action"),
    [
        ("/tasks/", "GET", "read"),
        ("/tasks/", "POST", "create"),
        ("/tasks/<int:task_pk>/", "PATCH", "update"),
        ("/tasks/<int:task_pk>/", "DELETE", "delete"),
        ("/tasks/<int:task_pk>/cancel/", "POST", "cancel"),
        ("/tasks/scheduled/calendars/<int:pk>/tasks/", "POST", "tasks"),
        ("/tasks/scheduled/calendars/<int:pk>/tasks/<int:task_id>/", "DELETE", "tasks:delete"),
    ],
)
def test_actions_are_named_from_the_route(rule, method, action):
    prefix = "/tasks/scheduled/calendars" if "calendars" in rule else "/tasks"
    assert action_of(rule, prefix, method) == action


def test_docs_security_quotes_the_matrix_as_the_code_has_it():
    from pathlib import Path

    from shared.permissions import matrix_markdown

    text = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text()
    quoted = text.split("<!-- role-matrix:start -->\n", 1)[1].split("\n<!-- role-matrix:end -->", 1)[0]
    assert quoted == matrix_markdown(), (
        "paste `python -c 'from shared.permissions import matrix_markdown as m; print(m())'`"
    )
