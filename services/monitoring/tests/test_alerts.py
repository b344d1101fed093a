"""Alert rules: validation codes, CRUD and roles, every new measurement checked, once per
cooldown notified (webhook signed, e-mail sent, retried), active alerts, history, test call."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest

from services.monitoring.alerts.channels import SmtpSettings, WebhookSettings
from services.monitoring.alerts.egress import EgressPolicy
from services.monitoring.alerts.notifier import Notifier
from services.monitoring.alerts.rules import CONDITIONS, METRIC_FIELDS, SEVERITIES
from shared.config import REPO_ROOT
from shared.testing.brand_isolation import assert_not_found_for, on_item
from shared.testing.fixtures import OTHER_BRAND, wait_until

from .contract import assert_matches_contract
from .receivers import smtp_server, verify_signature, webhook_receiver

TEST_RECEIVERS = EgressPolicy(allow_loopback=True)

URL = "/tasks/monitoring/alerts/"


def rule_body(**fields):
    return {
        "name": "slow analyses",
        "metric_field": "execution_time_ms",
        "condition": "gt",
        "threshold_value": 1000,
        "severity": "high",
        **fields,
    }


@pytest.fixture
def make_rule(client, auth):
    def make(headers=None, **fields):
        response = client.post(URL, json=rule_body(**fields), headers=headers or auth.headers())
        assert response.status_code == 201, response.json
        return response.json

    return make


class TestValidation:
    @pytest.mark.parametrize(
        "fields, code, field",
        [
            ({"metric_field": "color"}, "METRIC_FIELD_INVALID", "metric_field"),
            ({"metric_field": "performance_score"}, "METRIC_FIELD_INVALID", "metric_field"),
            ({"threshold_value": -5}, "THRESHOLD_OUT_OF_RANGE", "threshold_value"),
            (
                {"metric_field": "cost_usd", "threshold_value": 1e12},
                "THRESHOLD_OUT_OF_RANGE",
                "threshold_value",
            ),
            ({"condition": "between"}, "VALIDATION_ERROR", "condition"),
            ({"severity": "apocalyptic"}, "VALIDATION_ERROR", "severity"),
            ({"notification_emails": ["not-an-address"]}, "VALIDATION_ERROR", "notification_emails.0"),
            ({"webhook_url": "ftp://example.com/x"}, "VALIDATION_ERROR", "webhook_url"),
            ({"cooldown_minutes": -1}, "VALIDATION_ERROR", "cooldown_minutes"),
            ({"threshold_value": "high"}, "VALIDATION_ERROR", "threshold_value"),
        ],
    )
    def test_each_error_has_its_code(self, client, auth, fields, code, field):
        response = client.post(URL, json=rule_body(**fields), headers=auth.headers())
        assert response.status_code == 400, response.json
        assert response.json["error_code"] == code
        assert field in response.json["field_errors"]

    @pytest.mark.parametrize("literal", ["NaN", "Infinity", "1e999"])
    def test_a_threshold_that_is_not_finite_is_refused(self, client, auth, literal):
        # not JSON numbers: the shared layer refuses the body before any field is read (docs/limits.md)
        raw = json.dumps(rule_body()).replace('"threshold_value": 1000', f'"threshold_value": {literal}')
        response = client.post(URL, data=raw, content_type="application/json", headers=auth.headers())
        assert (response.status_code, response.json["error_code"]) == (400, "MALFORMED_JSON")

    def test_names_are_unique_per_brand(self, client, auth, make_rule):
        make_rule()
        again = client.post(URL, json=rule_body(), headers=auth.headers())
        assert again.status_code == 400 and list(again.json["field_errors"]) == ["name"]
        make_rule(headers=auth.headers(brand=OTHER_BRAND))  # another brand may use the name

    def test_changing_the_field_rechecks_the_threshold(self, client, auth, make_rule):
        rule = make_rule(threshold_value=5000)
        response = client.patch(
            f"{URL}{rule['id']}/",
            json={"metric_field": "cpu_usage_percent", "threshold_value": 1e9},
            headers=auth.headers(),
        )
        assert response.json["error_code"] == "THRESHOLD_OUT_OF_RANGE"


class TestCrud:
    def test_crud_roles_and_brands(self, client, auth, make_rule):
        rule = make_rule(webhook_secret="s3cret-value", notification_emails=["ops@example.com"])
        assert rule["brand"] == {"id": 9, "name": "Humari"} and rule["webhook_secret_set"] is True
        assert "webhook_secret" not in rule
        item = f"{URL}{rule['id']}/"
        assert client.get(item, headers=auth.headers(role="viewer")).json["name"] == "slow analyses"
        assert (
            client.post(URL, json=rule_body(name="x"), headers=auth.headers(role="viewer")).status_code == 403
        )
        patched = client.patch(
            item, json={"is_active": False, "cooldown_minutes": 0}, headers=auth.headers(role="operator")
        )
        assert (patched.json["is_active"], patched.json["cooldown_minutes"], patched.json["severity"]) == (
            False,
            0,
            "high",
        )
        replaced = client.put(item, json=rule_body(name="renamed", condition="lt"), headers=auth.headers())
        assert (replaced.json["name"], replaced.json["condition"], replaced.json["is_active"]) == (
            "renamed",
            "lt",
            True,
        )
        other = auth.headers(brand=OTHER_BRAND)
        assert_not_found_for(client, other, on_item(item, "get", "patch", "delete"))
        assert client.get(URL, headers=other).json["count"] == 0
        assert client.delete(item, headers=auth.headers(role="operator")).status_code == 403
        assert client.delete(item, headers=auth.headers(role="admin")).status_code == 204
        assert client.get(item, headers=auth.headers()).status_code == 404

    def test_list_filters(self, client, auth, make_rule):
        make_rule(name="a", severity="low", threshold_value=10)
        make_rule(name="b", metric_field="cost_usd", condition="gte", threshold_value=5, is_active=False)

        def names(query):
            response = client.get(URL + query, headers=auth.headers())
            assert response.status_code == 200, response.json
            return [r["name"] for r in response.json["results"]]

        assert names("?is_active=false") == ["b"]
        assert names("?metric_field=cost_usd") == ["b"]
        assert names("?condition=gt&severity=low") == ["a"]
        assert names("?threshold_value__gte=6&ordering=name") == ["a"]
        assert names("?ordering=-name") == ["b", "a"]
        assert client.get(URL + "?metric_field=color", headers=auth.headers()).status_code == 400
        assert (
            client.get(URL + "?last_triggered_after=2000-01-01T00:00:00Z", headers=auth.headers()).json[
                "count"
            ]
            == 0
        )


class TestTriggering:
    def test_a_rule_notifies_once_per_cooldown_and_records_every_match(self, client, auth, feed, make_rule):
        rule = make_rule(
            cooldown_minutes=30, webhook_url="http://127.0.0.1:9/x", notification_emails=["a@example.com"]
        )
        make_rule(name="other types only", task_types=["ai.content"], threshold_value=1)
        first = feed.run(execution_time_ms=1500.0)
        second = feed.run(execution_time_ms=2500.0)
        feed.run(execution_time_ms=500.0)  # below the threshold
        history = client.get(f"{URL}history/", headers=auth.headers()).json
        assert history["count"] == 2
        assert [(e["task_id"], e["value"], e["notified"]) for e in history["results"]] == [
            (second["task_id"], 2500.0, False),
            (first["task_id"], 1500.0, True),
        ]
        announced = feed.published("alert.triggered")
        assert [e["data"]["task_ids"] for e in announced] == [[first["task_id"]], [second["task_id"]]]
        for event in announced:
            assert_matches_contract(event)
        detail = client.get(f"{URL}{rule['id']}/", headers=auth.headers()).json
        assert detail["trigger_count"] == 2 and detail["last_triggered_at"]
        active = client.get(f"{URL}active/", headers=auth.headers()).json
        assert active["active_alerts"] == 1
        [alert] = active["alerts"]
        assert (alert["id"], alert["current_value"], alert["threshold_value"], alert["severity"]) == (
            rule["id"],
            2500.0,
            1000.0,
            "high",
        )
        assert sorted(alert["affected_tasks"]) == sorted([first["task_id"], second["task_id"]])
        # the notifications were queued once (webhook + e-mail), for the first match only
        with feed.container.session_factory() as session:
            from services.monitoring.models import Notification

            assert sorted(n.channel for n in session.query(Notification)) == ["email", "webhook"]
        # the other brand sees none of it
        other = auth.headers(brand=OTHER_BRAND)
        assert client.get(f"{URL}history/", headers=other).json["count"] == 0
        assert client.get(f"{URL}active/", headers=other).json == {"active_alerts": 0, "alerts": []}

    def test_test_call_and_cooldown_conflict(self, client, auth, feed, make_rule):
        rule = make_rule(cooldown_minutes=10, webhook_url="http://127.0.0.1:9/x")
        test = f"{URL}{rule['id']}/test/"
        dry = client.post(test, json={"test_value": 1500}, headers=auth.headers()).json
        assert dry["would_trigger"] is True and dry["condition"] == "gt" and dry["threshold_value"] == 1000
        assert (
            client.post(test, json={"test_value": 10}, headers=auth.headers()).json["would_trigger"] is False
        )
        sent = client.post(test, json={"test_value": 10, "send_notification": True}, headers=auth.headers())
        assert sent.status_code == 200 and sent.json["notifications_queued"] == 1
        feed.run(execution_time_ms=5000.0)  # a real match starts the cooldown
        cooling = client.post(
            test, json={"test_value": 1500, "send_notification": True}, headers=auth.headers()
        )
        assert (cooling.status_code, cooling.json["error_code"]) == (409, "ALERT_COOLDOWN_ACTIVE")
        bad = client.post(test, json={"test_value": "x"}, headers=auth.headers())
        assert bad.status_code == 400 and "test_value" in bad.json["field_errors"]
        assert (
            client.post(test, json={"test_value": 1}, headers=auth.headers(brand=OTHER_BRAND)).status_code
            == 404
        )

    def test_history_filters(self, client, auth, feed, make_rule):
        slow = make_rule(name="slow", severity="low")
        make_rule(name="costly", metric_field="cost_usd", threshold_value=1, severity="critical")
        feed.run(execution_time_ms=2000.0, cost_usd=5.0)

        def rules(query):
            response = client.get(f"{URL}history/{query}", headers=auth.headers())
            assert response.status_code == 200, response.json
            return sorted(e["alert_rule"]["name"] for e in response.json["results"])

        assert rules("") == ["costly", "slow"]
        assert rules(f"?alert_rule={slow['id']}") == ["slow"]
        assert rules("?severity=critical,high") == ["costly"]
        assert rules("?days=1") == ["costly", "slow"]
        assert client.get(f"{URL}history/?days=0", headers=auth.headers()).status_code == 400
        assert client.get(f"{URL}history/?severity=meh", headers=auth.headers()).status_code == 400


def test_notifications_are_delivered_signed_and_retried(client, auth, feed, make_rule, database_url):
    if not database_url.startswith("sqlite"):
        pytest.skip("delivery does not depend on the database (the end-to-end test runs it on PostgreSQL)")
    with webhook_receiver(fail_first=1) as hook, smtp_server() as (port, inbox):
        make_rule(
            webhook_url=hook.url, webhook_secret="rule-secret-123", notification_emails=["ops@example.com"]
        )
        task = feed.run(execution_time_ms=3000.0)
        notifier = Notifier(
            feed.container.session_factory,
            WebhookSettings(default_secret="unused-default", timeout_seconds=2, egress=TEST_RECEIVERS),
            SmtpSettings(host="127.0.0.1", port=port, sender="alerts@taskhub.test"),
        )
        notifier.backoff = lambda attempts: timedelta(0)  # type: ignore[method-assign]
        wait_until(lambda: notifier.send_due() == 0 and len(hook.calls) == 2 and inbox.messages, 10)
        first, retried = hook.calls
        assert first.body == retried.body  # the same delivery, tried again after the 500
        assert verify_signature("rule-secret-123", retried)
        payload = json.loads(retried.body)
        assert payload["task_ids"] == [task["task_id"]] and payload["rule"]["name"] == "slow analyses"
        [mail] = inbox.messages
        assert mail.rcpt_tos == ["ops@example.com"] and mail.mail_from == "alerts@taskhub.test"
        assert task["task_id"] in mail.content.decode()


def test_the_consoles_rule_form_offers_the_rules_own_choices():
    """The console is static files: its alert rule form lists the choices itself, so this pins
    them to the rules' (a metric the rules dropped would be offered and refused)."""
    page = (REPO_ROOT / "console/static/pages/monitoring.js").read_text()
    for name, choices in (
        ("METRIC_FIELDS", METRIC_FIELDS),
        ("CONDITIONS", CONDITIONS),
        ("SEVERITIES", SEVERITIES),
    ):
        declared = re.search(rf"const {name} = \[(.*?)\];", page, re.S)
        assert declared is not None, name
        assert re.findall(r'"([^"]+)"', declared.group(1)) == list(choices), name
