"""Alert rules: their CRUD, the check of every new metrics record against the brand's active
rules, and the test call. A match is stored (history) and announced (alert.triggered); outside
the rule's cooldown it also queues notifications, which the notifier loop sends later: nothing
here waits on a webhook or an SMTP server."""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.auth import Principal
from shared.crud import flush_unique, get_owned, name_taken, new_row, update_fields
from shared.domain_errors import Conflict, InvalidField, QuotaExceeded
from shared.events.catalog import AlertTriggered
from shared.events.envelope import iso, utcnow
from shared.unit_of_work import UnitOfWork

from ..models import AlertEvent, AlertRule, Notification
from .egress import EgressPolicy, UnsafeWebhook, check_url
from .notifier import NOTIFIER_WAKEUP
from .rules import check_rule, describe, matches

MAX_AFFECTED_TASKS = 50


def get_rule(session: Session, brand_id: int, pk: int, *, lock: bool = False) -> AlertRule:
    return get_owned(session, AlertRule, brand_id, pk, "Alert rule", lock=lock)


NAME_TAKEN = "An alert rule of this brand already has this name."


def _save(uow: UnitOfWork, rule: AlertRule, egress: EgressPolicy) -> AlertRule:
    check_rule(rule.metric_field, rule.threshold_value)
    if rule.webhook_url:
        try:
            check_url(rule.webhook_url, egress)
        except UnsafeWebhook as error:
            raise InvalidField("webhook_url", f"Webhook URL refused: {error}.") from None
        if not rule.webhook_secret:
            # every webhook is signed, with a key of the rule's own (never one shared by brands)
            rule.webhook_secret = rule.generated_secret = secrets.token_urlsafe(32)  # type: ignore[attr-defined]
    if name_taken(uow.session, AlertRule, rule.brand_id, rule.name, rule.id):
        raise InvalidField("name", NAME_TAKEN)
    uow.session.add(rule)
    flush_unique(uow, "name", NAME_TAKEN)
    return rule


def create_rule(
    uow: UnitOfWork, principal: Principal, fields: dict[str, Any], egress: EgressPolicy
) -> AlertRule:
    rule = AlertRule(**new_row(principal, utcnow()), trigger_count=0, **fields)
    return _save(uow, rule, egress)


def update_rule(
    uow: UnitOfWork, brand_id: int, pk: int, fields: dict[str, Any], egress: EgressPolicy
) -> AlertRule:
    rule = get_rule(uow.session, brand_id, pk, lock=True)
    update_fields(rule, fields, utcnow())
    return _save(uow, rule, egress)


def delete_rule(uow: UnitOfWork, brand_id: int, pk: int) -> None:
    uow.session.delete(get_rule(uow.session, brand_id, pk, lock=True))


def _applies(rule: AlertRule, measurement: Mapping[str, Any]) -> bool:
    if not rule.is_active or rule.brand_id != measurement["brand_id"]:
        return False
    if rule.task_types and measurement["task_type"] not in rule.task_types:
        return False
    return matches(rule.condition, float(measurement[rule.metric_field] or 0), rule.threshold_value)


def cooling_down_until(rule: AlertRule, now: datetime) -> datetime | None:
    if rule.last_notified_at is None or rule.cooldown_minutes <= 0:
        return None
    ends = rule.last_notified_at + timedelta(minutes=rule.cooldown_minutes)
    return ends if ends > now else None


def evaluate(uow: UnitOfWork, measurements: Sequence[Mapping[str, Any]]) -> list[AlertEvent]:
    """Check new measurements (metrics records as measured, in order) against their brands'
    active rules: the rules are read once, then matched in memory."""
    if not measurements:
        return []
    brands = sorted({m["brand_id"] for m in measurements})
    candidates = uow.session.scalars(
        select(AlertRule).where(AlertRule.brand_id.in_(brands), AlertRule.is_active.is_(True))
    ).all()
    matched_ids = sorted({rule.id for rule in candidates for m in measurements if _applies(rule, m)})
    if not matched_ids:
        return []
    # lock the matching rules (fresh values): two records at once notify once per cooldown
    rules = uow.session.scalars(
        select(AlertRule)
        .where(AlertRule.id.in_(matched_ids))
        .order_by(AlertRule.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).all()
    now = utcnow()
    matches = [(rule, m, _match(rule, m, now)) for m in measurements for rule in rules if _applies(rule, m)]
    uow.session.add_all([event for _, _, event in matches])
    uow.session.flush()  # the alert events' ids, for the notifications and the announcements
    for rule, measurement, event in matches:
        if event.notified:
            payload = notification_payload(rule, event.value, [measurement["task_id"]], event)
            _queue_notifications(uow, rule, payload)
        uow.publish(
            AlertTriggered(
                rule_id=rule.id,
                name=rule.name,
                severity=rule.severity,
                metric_field=rule.metric_field,
                value=event.value,
                threshold=rule.threshold_value,
                condition=rule.condition,
                task_ids=[measurement["task_id"]],
                alert_event_id=event.id,
                notified=event.notified,
            ),
            rule.brand_id,
        )
    return [event for _, _, event in matches]


def _match(rule: AlertRule, measurement: Mapping[str, Any], now: datetime) -> AlertEvent:
    """Record a match on the (locked) rule; outside its cooldown it notifies and starts one."""
    notify = cooling_down_until(rule, now) is None
    rule.trigger_count += 1
    rule.last_triggered_at = now
    if notify:
        rule.last_notified_at = now
    return AlertEvent(
        brand_id=rule.brand_id,
        rule_id=rule.id,
        rule_name=rule.name,
        severity=rule.severity,
        metric_field=rule.metric_field,
        condition=rule.condition,
        threshold_value=rule.threshold_value,
        value=float(measurement[rule.metric_field] or 0),
        base_task=measurement["base_task"],
        task_id=measurement["task_id"],
        notified=notify,
        triggered_at=now,
    )


def notification_payload(
    rule: AlertRule, value: float, task_ids: list[str], event: AlertEvent | None
) -> dict[str, Any]:
    """The JSON body of the webhook (and the content of the e-mail)."""
    return {
        "event": "alert.triggered",
        "test": event is None,
        "alert_event_id": event.id if event else None,
        "triggered_at": iso(event.triggered_at if event else utcnow()),
        "brand": {"id": rule.brand_id, "name": rule.brand_name},
        "rule": {
            "id": rule.id,
            "name": rule.name,
            "severity": rule.severity,
            "metric_field": rule.metric_field,
            "condition": rule.condition,
            "threshold_value": rule.threshold_value,
        },
        "value": value,
        "task_ids": task_ids,
        "message": describe(rule.metric_field, rule.condition, value, rule.threshold_value),
    }


def _queue_notifications(uow: UnitOfWork, rule: AlertRule, payload: dict[str, Any]) -> int:
    now = utcnow()
    targets = []
    if rule.webhook_url:
        targets.append(("webhook", rule.webhook_url))
    if rule.notification_emails:
        targets.append(("email", ",".join(rule.notification_emails)))
    if targets:
        uow.wake(NOTIFIER_WAKEUP)
    for channel, target in targets:
        uow.session.add(
            Notification(
                brand_id=rule.brand_id,
                alert_event_id=payload["alert_event_id"],
                rule_id=rule.id,
                channel=channel,
                target=target,
                payload=payload,
                status="pending",
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
        )
    return len(targets)


def test_rule(
    uow: UnitOfWork, brand_id: int, pk: int, test_value: float, send: bool, sends_per_minute: int = 5
) -> dict[str, Any]:
    """Would this value trigger? With send_notification, a test notification goes out through the
    rule's channels (it is not a match: no history, and it does not start a cooldown), at most
    `sends_per_minute` a minute per brand: the platform's mail relay and egress are not a
    tenant's flood source."""
    rule = get_rule(uow.session, brand_id, pk)
    would = matches(rule.condition, test_value, rule.threshold_value)
    sentence = describe(rule.metric_field, rule.condition, test_value, rule.threshold_value)
    message = f"{sentence}: would trigger" if would else f"{sentence} is false: would not trigger"
    queued = 0
    if send:
        until = cooling_down_until(rule, utcnow())
        if until is not None:
            raise Conflict(
                "ALERT_COOLDOWN_ACTIVE",
                f"This rule notified less than {rule.cooldown_minutes} minutes ago.",
                cooldown_ends_at=iso(until),
            )
        _check_test_rate(uow, brand_id, sends_per_minute)
        queued = _queue_notifications(uow, rule, notification_payload(rule, test_value, [], None))
        message += f"; {queued} test notification(s) queued"
    return {
        "would_trigger": would,
        "test_value": test_value,
        "threshold_value": rule.threshold_value,
        "condition": rule.condition,
        "message": message,
        "notifications_queued": queued,
    }


def _check_test_rate(uow: UnitOfWork, brand_id: int, per_minute: int) -> None:
    since = utcnow() - timedelta(minutes=1)
    recent = uow.session.scalars(
        select(Notification.created_at)
        .where(
            Notification.brand_id == brand_id,
            Notification.created_at >= since,
            Notification.alert_event_id.is_(None),  # test sends (a match has its event)
        )
        .order_by(Notification.created_at)
    ).all()
    if len(recent) >= per_minute:
        wait = max(1, int((recent[0] - since).total_seconds()) + 1)
        raise QuotaExceeded(
            f"At most {per_minute} test notifications a minute per brand; try again in {wait} s.",
            retry_after=wait,
        )


def active_alerts(session: Session, brand_id: int) -> dict[str, Any]:
    """Rules whose last match is younger than their cooldown (at least a minute)."""
    now = utcnow()
    recent = session.scalars(
        select(AlertRule)
        .where(AlertRule.brand_id == brand_id, AlertRule.last_triggered_at >= now - timedelta(days=7))
        .order_by(AlertRule.last_triggered_at.desc())
    ).all()
    alerts = []
    for rule in recent:
        since = now - timedelta(minutes=max(1, rule.cooldown_minutes))
        if rule.last_triggered_at is None or rule.last_triggered_at < since:
            continue
        in_window = select(AlertEvent).where(AlertEvent.rule_id == rule.id, AlertEvent.triggered_at >= since)
        latest = session.scalars(in_window.order_by(AlertEvent.id.desc()).limit(1)).first()
        tasks = session.scalars(
            select(AlertEvent.task_id)
            .where(AlertEvent.rule_id == rule.id, AlertEvent.triggered_at >= since)
            .group_by(AlertEvent.task_id)
            .order_by(func.max(AlertEvent.id).desc())
            .limit(MAX_AFFECTED_TASKS)
        ).all()
        alerts.append(
            {
                "id": rule.id,
                "name": rule.name,
                "triggered_at": iso(rule.last_triggered_at),
                "current_value": latest.value if latest else None,
                "threshold_value": rule.threshold_value,
                "severity": rule.severity,
                "affected_tasks": [t for t in tasks if t],
            }
        )
    return {"active_alerts": len(alerts), "alerts": alerts}
