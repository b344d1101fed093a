"""HTTP layer of /tasks/monitoring/alerts/: rules (CRUD, test), active alerts, history."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask.views import MethodView
from sqlalchemy import select

from shared.api import Blueprint
from shared.auth import current_principal
from shared.crud import in_session, in_transaction
from shared.events.envelope import utcnow
from shared.listing import Listing, column_filters, ordering_columns, paginate, timestamp_filters

from ..container import monitoring
from ..models import AlertEvent, AlertRule
from . import service
from .schemas import (
    ActiveAlertsSchema,
    AlertEventPageSchema,
    AlertHistoryArgs,
    AlertRuleListArgs,
    AlertRulePageSchema,
    AlertRulePatchSchema,
    AlertRuleReadSchema,
    AlertRuleSchema,
    AlertTestResultSchema,
    AlertTestSchema,
)

blp = Blueprint(
    "alerts",
    __name__,
    url_prefix="/alerts",
    description="Alert rules over metrics, their test, active alerts and history.",
)

RULE_COLUMNS = ordering_columns(AlertRuleListArgs, AlertRule)
RULES = Listing(
    filters={
        **column_filters(AlertRuleListArgs, AlertRule),
        "last_triggered_after": lambda v: AlertRule.last_triggered_at >= v,
        **timestamp_filters(AlertRule.created_at, AlertRule.updated_at),
    },
    ordering=RULE_COLUMNS,
    tiebreak=AlertRule.id,
    search=(AlertRule.name, AlertRule.description),
    ranges=RULE_COLUMNS,
)
HISTORY = Listing(
    filters={
        **column_filters(AlertHistoryArgs, AlertEvent),
        "days": lambda v: AlertEvent.triggered_at >= utcnow() - timedelta(days=v),
        "alert_rule": lambda v: AlertEvent.rule_id == v,
        **timestamp_filters(AlertEvent.triggered_at),  # an alert event is never updated
    },
    ordering=ordering_columns(AlertHistoryArgs, AlertEvent),
    tiebreak=AlertEvent.id,
    default_ordering=(("triggered_at", True),),
    search=(AlertEvent.rule_name, AlertEvent.task_id),
)


@blp.route("/")
class AlertRules(MethodView):
    @blp.arguments(AlertRuleListArgs, location="query")
    @blp.response(200, AlertRulePageSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """List alert rules"""
        stmt = select(AlertRule).where(AlertRule.brand_id == current_principal().brand_id)
        return in_session(monitoring(), paginate, RULES.select(stmt, args), args)

    @blp.arguments(AlertRuleSchema)
    @blp.response(201, AlertRuleReadSchema)
    def post(self, fields: dict[str, Any]) -> AlertRule:
        """Create an alert rule"""
        container = monitoring()
        egress = container.notifier.webhook.egress
        return in_transaction(container, service.create_rule, current_principal(), fields, egress)


@blp.route("/<int:pk>/")
class AlertRuleById(MethodView):
    @blp.response(200, AlertRuleReadSchema)
    def get(self, pk: int) -> AlertRule:
        """Get an alert rule"""
        return in_session(monitoring(), service.get_rule, current_principal().brand_id, pk)

    @blp.arguments(AlertRuleSchema)
    @blp.response(200, AlertRuleReadSchema)
    def put(self, fields: dict[str, Any], pk: int) -> AlertRule:
        """Replace an alert rule"""
        return _update(pk, fields)

    @blp.arguments(AlertRulePatchSchema)
    @blp.response(200, AlertRuleReadSchema)
    def patch(self, fields: dict[str, Any], pk: int) -> AlertRule:
        """Change some fields of an alert rule"""
        return _update(pk, fields)

    @blp.response(204)
    def delete(self, pk: int) -> None:
        """Delete an alert rule (admin; its history stays)"""
        in_transaction(monitoring(), service.delete_rule, current_principal().brand_id, pk)


def _update(pk: int, fields: dict[str, Any]) -> AlertRule:
    container = monitoring()
    egress = container.notifier.webhook.egress
    return in_transaction(container, service.update_rule, current_principal().brand_id, pk, fields, egress)


@blp.route("/<int:pk>/test/")
class AlertRuleTest(MethodView):
    @blp.error(409, "The rule is within its cooldown (ALERT_COOLDOWN_ACTIVE).")
    @blp.arguments(AlertTestSchema)
    @blp.response(200, AlertTestResultSchema)
    def post(self, body: dict[str, Any], pk: int) -> dict[str, Any]:
        """Would this value trigger the rule? Optionally send a test notification"""
        container = monitoring()
        return in_transaction(
            container,
            service.test_rule,
            current_principal().brand_id,
            pk,
            body["test_value"],
            body["send_notification"],
            container.test_sends_per_minute,
        )


@blp.route("/active/")
class ActiveAlerts(MethodView):
    @blp.answers(ActiveAlertsSchema)
    def get(self) -> dict[str, Any]:
        """Rules that matched within their cooldown window"""
        return in_session(monitoring(), service.active_alerts, current_principal().brand_id)


@blp.route("/history/")
class AlertHistory(MethodView):
    @blp.arguments(AlertHistoryArgs, location="query")
    @blp.response(200, AlertEventPageSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """Past matches of the brand's rules, newest first"""
        stmt = select(AlertEvent).where(AlertEvent.brand_id == current_principal().brand_id)
        return in_session(monitoring(), paginate, HISTORY.select(stmt, args), args)
