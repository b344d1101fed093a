"""The role matrix: who may do what, written once for every service (docs/security.md quotes it).

A request is a resource (the blueprint that serves it) and an action:
- every GET is `read` (no GET changes anything);
- `create` (POST on the collection), `update` (PUT/PATCH of one object), `delete` (DELETE of one);
- any other POST is named after its last path segment (`cancel`, `toggle`, `test`, ...), and
  another method on such a path is `<segment>:<method>` (detaching a calendar: `tasks:delete`);
- a few actions depend on the body and are checked by their view with `authorize()`
  (`optimize-schedules:apply`).

Each cell gives the least role a user needs, and the machine scope (shared.machine_identity)
that may call it too. A request with no cell is refused: a new endpoint needs its row here
(a test walks every route of every service).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from flask import current_app, request

from .errors import ApiError
from .machine_identity import ATTEMPT, CANCEL_RUN
from .routes import service_path

ROLES = ("viewer", "operator", "admin")
ROLE_RANK = {role: rank for rank, role in enumerate(ROLES)}


@dataclass(frozen=True)
class Rule:
    role: str | None  # the least user role; None: no user may (machines only)
    machine: str | None = None  # the machine scope that may call it too


VIEWER, OPERATOR, ADMIN = Rule("viewer"), Rule("operator"), Rule("admin")
# what every resource has; admin deletes configuration (schedules, calendars, alert rules, workers)
READ_WRITE = {"read": VIEWER, "create": OPERATOR, "update": OPERATOR, "delete": OPERATOR}
CONFIGURATION = {**READ_WRITE, "delete": ADMIN}

ROLE_MATRIX: Mapping[str, Mapping[str, Rule]] = {
    # core
    "tasks": {
        **READ_WRITE,
        "retry": OPERATOR,
        "cancel": Rule("operator", machine=CANCEL_RUN),  # the scheduler's cancel_previous
        "bulk": OPERATOR,
    },
    "task_streams": {"read": VIEWER},  # GET /tasks/stream/, /tasks/{id}/stream/
    # monitoring
    "metrics": READ_WRITE,
    "alerts": {**CONFIGURATION, "test": OPERATOR},
    "workers": {**CONFIGURATION},  # a brand writes only its own manual records
    # persistence
    "persistent_jobs": {
        **READ_WRITE,
        "pause": OPERATOR,
        "resume": OPERATOR,
        "restart": OPERATOR,
        "auto-resume": OPERATOR,
        "validate-config": OPERATOR,
        "cleanup-old": ADMIN,
        "for-task": Rule(None, machine=ATTEMPT),  # the worker, for the attempt it was given
    },
    "checkpoints": {
        **READ_WRITE,
        "create": Rule("operator", machine=ATTEMPT),
        "optimize-storage": ADMIN,
    },
    "job_states": {"read": VIEWER, "create": Rule("operator", machine=ATTEMPT), "update": OPERATOR},
    # scheduling
    "periodic_tasks": {
        **CONFIGURATION,
        "toggle": OPERATOR,
        "execute-now": OPERATOR,
        "execute-ready": OPERATOR,
        "validate-cron": OPERATOR,
        "optimize-schedules": OPERATOR,  # a dry run
        "optimize-schedules:apply": ADMIN,
    },
    "cron_jobs": {**CONFIGURATION, "execute": OPERATOR},
    "calendars": {**CONFIGURATION, "tasks": OPERATOR, "tasks:delete": OPERATOR},  # attach, detach
}

_METHOD_ACTIONS = {"POST": "create", "PUT": "update", "PATCH": "update", "DELETE": "delete"}


def action_of(rule: str, prefix: str, method: str) -> str:
    if method in ("GET", "HEAD"):
        return "read"
    rest = rule[len(prefix) :] if rule.startswith(prefix) else rule
    named = [part for part in rest.split("/") if part and not part.startswith("<")]
    if not named:
        return _METHOD_ACTIONS.get(method, method.lower())
    return named[-1] if method == "POST" else f"{named[-1]}:{method.lower()}"


def rule_for(resource: str, action: str) -> Rule | None:
    return ROLE_MATRIX.get(resource, {}).get(action)


def current_action() -> tuple[str, str] | None:
    """The (resource, action) of the request being served; None outside a known route."""
    if request.url_rule is None or request.blueprint is None:
        return None
    blueprint = current_app.blueprints.get(request.blueprint)
    # a blueprint's url_prefix is relative to its service's route (shared.service_app)
    prefix = service_path(current_app.extensions["taskhub"].service, getattr(blueprint, "url_prefix", None))
    return request.blueprint, action_of(request.url_rule.rule, prefix, request.method)


def check(role: str | None, machine_scope: str | None, resource: str, action: str) -> None:
    """Raise 403 unless a caller with this role (a user) or this scope (a machine) may act."""
    rule = rule_for(resource, action)
    if rule is None:
        raise ApiError(403, "PERMISSION_DENIED", f"No role may call {resource}:{action}.")
    if machine_scope is not None:
        if rule.machine != machine_scope:
            raise ApiError(403, "PERMISSION_DENIED", "This machine credential cannot call this endpoint.")
        return
    if rule.role is None:
        raise ApiError(403, "PERMISSION_DENIED", "Only a platform process may call this endpoint.")
    if role is None or ROLE_RANK.get(role, -1) < ROLE_RANK[rule.role]:
        raise ApiError(403, "PERMISSION_DENIED", f"This action needs the {rule.role} role.")


def _cell(rule: Rule | None) -> str:
    if rule is None:
        return "—"
    who = rule.role or "no user"
    return f"{who} + machine `{rule.machine}`" if rule.machine else who


def matrix_markdown() -> str:
    """The matrix as docs/security.md quotes it (a test keeps the two the same)."""
    lines = [
        "| resource | read | create | update | delete | other actions |",
        "|---|---|---|---|---|---|",
    ]
    for resource, actions in ROLE_MATRIX.items():
        other = ", ".join(
            f"`{a}`: {_cell(r)}"
            for a, r in actions.items()
            if a not in _METHOD_ACTIONS.values() and a != "read"
        )
        cells = [_cell(actions.get(a)) for a in ("read", "create", "update", "delete")]
        lines.append(f"| `{resource}` | " + " | ".join(cells) + f" | {other or '—'} |")
    return "\n".join(lines)
