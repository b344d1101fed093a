"""HTTP layer of /tasks/monitoring/alerts/: rules (CRUD, test), active alerts, history."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask.views import MethodView
from sqlalchemy import select

from shared.api import Blueprint
from shared.auth import current_principal
from shared.events.envelope import utcnow
from shared.listing import (
    apply_filters,
    apply_ordering,
    column_filters,
    paginate,
    search_clause,
    timestamp_filters,
)

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

RULE_FILTERS: dict[str, Any] = {
    **column_filters(AlertRuleListArgs, AlertRule),
    "last_triggered_after": lambda v: AlertRule.last_triggered_at >= v,
    **timestamp_filters(AlertRule.created_at, AlertRule.updated_at),
}
RULE_COLUMNS = {
    name: getattr(AlertRule, name)
    for name in ("name", "created_at", "updated_at", "last_triggered_at", "trigger_count", "threshold_value")
}
EVENT_FILTERS: dict[str, Any] = {
    **column_filters(AlertHistoryArgs, AlertEvent),
    "days": lambda v: AlertEvent.triggered_at >= utcnow() - timedelta(days=v),
    "alert_rule": lambda v: AlertEvent.rule_id == v,
    **timestamp_filters(AlertEvent.triggered_at),  # an alert event is never updated
}
EVENT_COLUMNS = {"triggered_at": AlertEvent.triggered_at, "value": AlertEvent.value}


@blp.route("/")
class AlertRules(MethodView):
    @blp.arguments(AlertRuleListArgs, location="query")
    @blp.response(200, AlertRulePageSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """List alert rules"""
        stmt = select(AlertRule).where(AlertRule.brand_id == current_principal().brand_id)
        stmt = apply_filters(stmt, args, RULE_FILTERS, RULE_COLUMNS)
        if args.get("search"):
            stmt = stmt.where(search_clause(args["search"], AlertRule.name, AlertRule.description))
        stmt = apply_ordering(stmt, args.get("ordering"), RULE_COLUMNS, [("created_at", True)], AlertRule.id)
        with monitoring().session_factory() as session:
            return paginate(session, stmt, args)

    @blp.arguments(AlertRuleSchema)
    @blp.response(201, AlertRuleReadSchema)
    def post(self, fields: dict[str, Any]) -> AlertRule:
        """Create an alert rule"""
        with monitoring().uow() as uow:
            rule = service.create_rule(uow, current_principal(), fields, monitoring().notifier.webhook.egress)
            uow.commit()
            return rule


@blp.route("/<int:pk>/")
class AlertRuleById(MethodView):
    @blp.response(200, AlertRuleReadSchema)
    def get(self, pk: int) -> AlertRule:
        """Get an alert rule"""
        with monitoring().session_factory() as session:
            return service.get_rule(session, current_principal().brand_id, pk)

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
        with monitoring().uow() as uow:
            service.delete_rule(uow, current_principal().brand_id, pk)
            uow.commit()


def _update(pk: int, fields: dict[str, Any]) -> AlertRule:
    with monitoring().uow() as uow:
        rule = service.update_rule(
            uow, current_principal().brand_id, pk, fields, monitoring().notifier.webhook.egress
        )
        uow.commit()
        return rule


@blp.route("/<int:pk>/test/")
class AlertRuleTest(MethodView):
    @blp.error(409, "The rule is within its cooldown (ALERT_COOLDOWN_ACTIVE).")
    @blp.arguments(AlertTestSchema)
    @blp.response(200, AlertTestResultSchema)
    def post(self, body: dict[str, Any], pk: int) -> dict[str, Any]:
        """Would this value trigger the rule? Optionally send a test notification"""
        with monitoring().uow() as uow:
            result = service.test_rule(
                uow,
                current_principal().brand_id,
                pk,
                body["test_value"],
                body["send_notification"],
                monitoring().test_sends_per_minute,
            )
            uow.commit()
            return result


@blp.route("/active/")
class ActiveAlerts(MethodView):
    @blp.answers(ActiveAlertsSchema)
    def get(self) -> dict[str, Any]:
        """Rules that matched within their cooldown window"""
        with monitoring().session_factory() as session:
            return service.active_alerts(session, current_principal().brand_id)


@blp.route("/history/")
class AlertHistory(MethodView):
    @blp.arguments(AlertHistoryArgs, location="query")
    @blp.response(200, AlertEventPageSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """Past matches of the brand's rules, newest first"""
        stmt = select(AlertEvent).where(AlertEvent.brand_id == current_principal().brand_id)
        stmt = apply_filters(stmt, args, EVENT_FILTERS)
        if args.get("search"):
            stmt = stmt.where(search_clause(args["search"], AlertEvent.rule_name, AlertEvent.task_id))
        stmt = apply_ordering(
            stmt, args.get("ordering"), EVENT_COLUMNS, [("triggered_at", True)], AlertEvent.id
        )
        with monitoring().session_factory() as session:
            return paginate(session, stmt, args)
