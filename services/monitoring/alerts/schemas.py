"""Alert rule, alert event and test-call schemas (docs/api.md §2)."""

from __future__ import annotations

import marshmallow as ma

from shared.api import ReadSchema, Schema, Timestamp, brand_of, creator_of
from shared.listing import CommaList, FlexibleBoolean, ListArgs, Ordering, page_schema
from shared.task_states import TASK_TYPE_PATTERN

from .rules import CONDITIONS, METRIC_FIELDS, SEVERITIES

TASK_TYPE = ma.fields.String(validate=ma.validate.Regexp(TASK_TYPE_PATTERN))
# a name goes into e-mail subjects: no line break, no control character (header injection)
NO_CONTROL = ma.validate.Regexp(
    r"^[^\x00-\x1f\x7f]*$", error="Control characters (line breaks, tabs) are not allowed."
)


class AlertRuleSchema(Schema):
    """POST and PUT: the whole rule. metric_field and threshold_value are checked by the service
    layer, which answers METRIC_FIELD_INVALID / THRESHOLD_OUT_OF_RANGE."""

    name = ma.fields.String(required=True, validate=[ma.validate.Length(min=1, max=200), NO_CONTROL])
    description = ma.fields.String(load_default="", validate=ma.validate.Length(max=5000))
    metric_field = ma.fields.String(required=True, validate=ma.validate.Length(max=100))
    condition = ma.fields.String(required=True, validate=ma.validate.OneOf(list(CONDITIONS)))
    # NaN and infinities are not JSON: shared.hostile_input refuses them before this schema runs
    threshold_value = ma.fields.Float(required=True, allow_nan=True)
    task_types = ma.fields.List(TASK_TYPE, load_default=list, validate=ma.validate.Length(max=100))
    severity = ma.fields.String(load_default="medium", validate=ma.validate.OneOf(SEVERITIES))
    is_active = ma.fields.Boolean(load_default=True)
    notification_emails = ma.fields.List(
        ma.fields.Email(), load_default=list, validate=ma.validate.Length(max=50)
    )
    # its form is checked by the service layer against the egress policy (alerts/egress.py)
    webhook_url = ma.fields.String(allow_none=True, load_default=None, validate=ma.validate.Length(max=2000))
    webhook_secret = ma.fields.String(
        load_only=True, allow_none=True, load_default=None, validate=ma.validate.Length(min=8, max=200)
    )
    cooldown_minutes = ma.fields.Integer(load_default=15, validate=ma.validate.Range(0, 10080))


class AlertRulePatchSchema(AlertRuleSchema):
    """PATCH: any subset (a partial load fills in no defaults)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, partial=True, **kwargs)  # type: ignore[arg-type]


class AlertRuleReadSchema(ReadSchema):
    id = ma.fields.Integer()
    name = ma.fields.String()
    brand = ma.fields.Function(brand_of)
    description = ma.fields.String()
    metric_field = ma.fields.String()
    condition = ma.fields.String()
    threshold_value = ma.fields.Float()
    task_types = ma.fields.List(ma.fields.String())
    severity = ma.fields.String()
    is_active = ma.fields.Boolean()
    notification_emails = ma.fields.List(ma.fields.String())
    webhook_url = ma.fields.String(allow_none=True)
    webhook_secret_set = ma.fields.Function(lambda r: bool(r.webhook_secret))
    # shown once, in the answer that generated it (a rule with a webhook and no secret of its own)
    webhook_secret = ma.fields.Function(lambda r: getattr(r, "generated_secret", None))
    cooldown_minutes = ma.fields.Integer()
    trigger_count = ma.fields.Integer()
    last_triggered_at = Timestamp(allow_none=True)
    created_by = ma.fields.Function(creator_of)
    created_at = Timestamp()
    updated_at = Timestamp()

    @ma.post_dump
    def _secret_once(self, data: dict, **kwargs: object) -> dict:
        if data.get("webhook_secret") is None:
            data.pop("webhook_secret", None)
        return data


AlertRulePageSchema = page_schema(AlertRuleReadSchema, "AlertRulePage")


class AlertRuleListArgs(ListArgs):
    range_filters = {"threshold_value": ma.fields.Float}
    is_active = FlexibleBoolean()
    metric_field = CommaList(METRIC_FIELDS)
    condition = CommaList(list(CONDITIONS))
    severity = CommaList(SEVERITIES)
    last_triggered_after = ma.fields.AwareDateTime()
    ordering = Ordering(
        ["name", "created_at", "updated_at", "last_triggered_at", "trigger_count", "threshold_value"]
    )


class AlertTestSchema(Schema):
    test_value = ma.fields.Float(required=True)
    send_notification = ma.fields.Boolean(load_default=False)


class AlertTestResultSchema(ReadSchema):
    would_trigger = ma.fields.Boolean()
    test_value = ma.fields.Float()
    threshold_value = ma.fields.Float()
    condition = ma.fields.String()
    message = ma.fields.String()
    notifications_queued = ma.fields.Integer()


class AlertEventSchema(ReadSchema):
    id = ma.fields.Integer()
    alert_rule = ma.fields.Function(lambda e: {"id": e.rule_id, "name": e.rule_name})
    severity = ma.fields.String()
    metric_field = ma.fields.String()
    condition = ma.fields.String()
    threshold_value = ma.fields.Float()
    value = ma.fields.Float()
    base_task = ma.fields.Integer(allow_none=True)
    task_id = ma.fields.String(allow_none=True)
    notified = ma.fields.Boolean()
    triggered_at = Timestamp()


AlertEventPageSchema = page_schema(AlertEventSchema, "AlertEventPage")


class AlertHistoryArgs(ListArgs):
    """created_after/before filter on triggered_at; search covers the rule name and task_id."""

    days = ma.fields.Integer(load_default=30, validate=ma.validate.Range(1, 365))
    alert_rule = ma.fields.Integer()
    severity = CommaList(SEVERITIES)
    ordering = Ordering(["triggered_at", "value"])


class _ActiveAlert(ReadSchema):
    id = ma.fields.Integer()
    name = ma.fields.String()
    triggered_at = ma.fields.String(allow_none=True)
    current_value = ma.fields.Float(allow_none=True)
    threshold_value = ma.fields.Float()
    severity = ma.fields.String()
    affected_tasks = ma.fields.List(ma.fields.Raw(), metadata={"description": "core task ids (newest first)"})


class ActiveAlertsSchema(ReadSchema):
    active_alerts = ma.fields.Integer()
    alerts = ma.fields.List(ma.fields.Nested(_ActiveAlert))
