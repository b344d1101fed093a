"""Issue 13, findings 3, 5 and 17: alert webhooks go to the public internet only (checked when a
rule is written and again at send time), a send has a total deadline and never holds the
others, a brand's sends are rate-limited, names cannot break e-mails, and every webhook is
signed with a key of its own rule over a timestamp."""

from __future__ import annotations

import socket
import time
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import select, update

from services.monitoring.alerts.channels import SmtpSettings, verify
from services.monitoring.alerts.egress import EgressPolicy
from services.monitoring.models import AlertRule, Notification
from shared.testing.fixtures import DEFAULT_BRAND, OTHER_BRAND, wait_until

from .receivers import smtp_server, verify_signature, webhook_receiver

URL = "/tasks/monitoring/alerts/"
# what the container runs with outside the tests: no loopback either
PRODUCTION = EgressPolicy()

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def rule_body(**fields: Any) -> dict[str, Any]:
    return {
        "name": "slow",
        "metric_field": "execution_time_ms",
        "condition": "gt",
        "threshold_value": 1000,
        "cooldown_minutes": 0,
        **fields,
    }


@pytest.fixture
def production(container):
    container.notifier.webhook = replace(container.notifier.webhook, egress=PRODUCTION)
    return container


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://127.0.0.1:8101/tasks/",
        "http://localhost:8101/tasks/",
        "http://core:8000/tasks/",
        "http://core.taskhub.svc.cluster.local/tasks/",
        "http://metadata.google.internal/",
        "http://[::1]:15672/api/",
        "http://[::ffff:127.0.0.1]/",
        "http://0x7f000001/",
        "http://2130706433/",
        "http://127.1/",
        "http://0177.0.0.1/",
        "http://10.0.0.1/",
        "http://172.16.5.4/",
        "http://192.168.1.1/",
        "http://100.64.0.1/",
        "http://[fd00::1]/",
        "http://user:pw@10.0.0.1:9200/_shutdown",
        "http://user:pw@hooks.example.com/",
        "ftp://hooks.example.com/",
        "javascript:alert(1)",
    ],
)
def test_internal_destinations_are_refused_on_write(client, auth, production, url):
    response = client.post(URL, json=rule_body(webhook_url=url), headers=auth.headers())
    assert response.status_code == 400, (url, response.json)
    assert "webhook_url" in response.json["field_errors"]


def test_a_public_url_is_accepted_and_an_edit_is_checked_too(client, auth, production):
    created = client.post(
        URL, json=rule_body(webhook_url="https://hooks.example.com/x"), headers=auth.headers()
    )
    assert created.status_code == 201, created.json
    moved = client.patch(
        f"{URL}{created.json['id']}/", json={"webhook_url": "http://169.254.169.254/"}, headers=auth.headers()
    )
    assert moved.status_code == 400 and "webhook_url" in moved.json["field_errors"]


def _queue(client, auth, url: str, brand: dict[str, Any] = DEFAULT_BRAND) -> dict[str, Any]:
    rule = client.post(URL, json=rule_body(webhook_url=url), headers=auth.headers(brand=brand))
    assert rule.status_code == 201, rule.json
    test = client.post(
        f"{URL}{rule.json['id']}/test/",
        json={"test_value": 5000, "send_notification": True},
        headers=auth.headers(brand=brand),
    )
    assert test.status_code == 200, test.json
    return rule.json


def _outcome(container, rule_id: int) -> Notification | None:
    with container.session_factory() as session:
        row = session.scalars(select(Notification).where(Notification.rule_id == rule_id)).first()
        return row if row is not None and row.status != "pending" else None


def _last_error(container, rule_id: int) -> str | None:
    with container.session_factory() as session:
        return session.scalars(select(Notification.last_error).where(Notification.rule_id == rule_id)).first()


def test_a_name_that_resolves_inside_at_send_time_is_refused(client, auth, container, monkeypatch):
    """DNS rebinding: the name was public when the rule was written, it is not when it is sent."""
    with webhook_receiver() as inside:
        port = int(inside.url.rsplit(":", 1)[1].split("/")[0])
        rule = _queue(client, auth, f"http://rebind.example.com:{port}/hooks")
        real = socket.getaddrinfo

        def rebound(host, *args, **kwargs):
            return (
                real("127.0.0.1", *args, **kwargs)
                if host == "rebind.example.com"
                else real(host, *args, **kwargs)
            )

        monkeypatch.setattr(socket, "getaddrinfo", rebound)
        container.notifier.webhook = replace(container.notifier.webhook, egress=PRODUCTION)
        container.notifier.send_due()
        row = wait_until(lambda: _outcome(container, rule["id"]), 10, message="the send refused")
        assert row.status == "failed" and "not public" in (row.last_error or "")
        assert inside.calls == []


def test_redirects_are_not_followed(client, auth, container):
    with webhook_receiver() as target, webhook_receiver(redirect_to="") as bouncer:
        bouncer.redirect_to = target.url
        rule = _queue(client, auth, bouncer.url)
        container.notifier.send_due()
        wait_until(lambda: _last_error(container, rule["id"]) == "HTTP 302", 10, message="the 302 recorded")
        assert len(bouncer.calls) == 1 and target.calls == []  # the send ended without following


def test_a_slow_receiver_is_cut_at_the_deadline_and_holds_no_one_else(client, auth, container):
    container.notifier.webhook = replace(container.notifier.webhook, timeout_seconds=1.0)
    with webhook_receiver(trickle_seconds=0.3) as slow, webhook_receiver() as fast:
        slow_rule = _queue(client, auth, slow.url)
        started = time.monotonic()
        container.notifier.send_due()
        wait_until(lambda: slow.calls, 5, message="the slow receiver got its call")
        fast_rule = _queue(client, auth, fast.url, brand=OTHER_BRAND)
        container.notifier.send_due()
        wait_until(lambda: fast.calls, 5, message="the other notification went out meanwhile")
        assert _outcome(container, slow_rule["id"]) is None  # the slow one still in flight
        error = wait_until(lambda: _last_error(container, slow_rule["id"]), 10, message="the slow send ended")
        elapsed = time.monotonic() - started
        assert elapsed < 7, elapsed  # one second in all, not 0.3 s per byte read (9 s and more)
        assert error == "no answer within 1 s"
        fast_outcome = _outcome(container, fast_rule["id"])
        assert fast_outcome is not None and fast_outcome.status == "sent"


def test_test_sends_are_rate_limited_per_brand(client, auth, container):
    rule = client.post(
        URL, json=rule_body(webhook_url="https://hooks.example.com/x"), headers=auth.headers()
    ).json
    send = {"test_value": 5000, "send_notification": True}
    for _ in range(container.test_sends_per_minute):
        assert client.post(f"{URL}{rule['id']}/test/", json=send, headers=auth.headers()).status_code == 200
    limited = client.post(f"{URL}{rule['id']}/test/", json=send, headers=auth.headers())
    assert (limited.status_code, limited.json["error_code"]) == (429, "RATE_LIMITED")
    assert int(limited.headers["Retry-After"]) >= 1
    theirs = client.post(
        URL,
        json=rule_body(webhook_url="https://hooks.example.com/y"),
        headers=auth.headers(brand=OTHER_BRAND),
    ).json
    other = client.post(f"{URL}{theirs['id']}/test/", json=send, headers=auth.headers(brand=OTHER_BRAND))
    assert other.status_code == 200  # another brand's budget


def test_the_notifier_sends_at_most_its_rate_per_brand(container):
    notifier = container.notifier
    notifier.per_brand_per_minute = 2
    clock = time.monotonic()
    assert [notifier._admit(9, clock) == 0 for _ in range(2)] == [True, True]
    notifier._in_flight.clear()
    assert notifier._admit(9, clock) > 0 and notifier._admit(10, clock) == 0


def test_a_line_break_in_a_name_is_refused_and_an_old_one_cannot_stop_the_mails(client, auth, container):
    refused = client.post(URL, json=rule_body(name="x\r\nBcc: victim@example.com"), headers=auth.headers())
    assert refused.status_code == 400 and "name" in refused.json["field_errors"]
    with smtp_server() as (port, inbox):
        container.notifier.smtp = SmtpSettings(host="127.0.0.1", port=port, sender="alerts@taskhub.test")
        poisoned = client.post(
            URL, json=rule_body(notification_emails=["ops@example.com"]), headers=auth.headers()
        )
        healthy = client.post(
            URL, json=rule_body(name="fine", notification_emails=["dev@example.com"]), headers=auth.headers()
        )
        with container.uow() as uow:  # what rules written before the check may hold
            uow.session.execute(
                update(AlertRule)
                .where(AlertRule.id == poisoned.json["id"])
                .values(name="x\r\nBcc: victim@example.com")
            )
            uow.commit()
        for rule in (poisoned.json, healthy.json):
            sent = client.post(
                f"{URL}{rule['id']}/test/",
                json={"test_value": 5000, "send_notification": True},
                headers=auth.headers(),
            )
            assert sent.status_code == 200
        container.notifier.send_due()
        wait_until(lambda: len(inbox.messages) == 2, 10, message="both e-mails sent")
        recipients = sorted(r for m in inbox.messages for r in m.rcpt_tos)
        assert recipients == ["dev@example.com", "ops@example.com"]  # no Bcc smuggled in


def test_webhooks_are_signed_with_the_rules_own_key_over_a_timestamp(client, auth, container):
    with webhook_receiver() as hook:
        mine = client.post(URL, json=rule_body(webhook_url=hook.url), headers=auth.headers())
        theirs = client.post(
            URL, json=rule_body(webhook_url=hook.url), headers=auth.headers(brand=OTHER_BRAND)
        )
        keys = [mine.json["webhook_secret"], theirs.json["webhook_secret"]]
        assert keys[0] != keys[1] and all(len(k) >= 32 for k in keys)  # shown once, at creation
        assert "webhook_secret" not in client.get(f"{URL}{mine.json['id']}/", headers=auth.headers()).json
        client.post(
            f"{URL}{mine.json['id']}/test/",
            json={"test_value": 5000, "send_notification": True},
            headers=auth.headers(),
        )
        container.notifier.send_due()
        [call] = wait_until(lambda: hook.calls, 10, message="the webhook")
        assert verify_signature(keys[0], call)
        assert not verify_signature(keys[1], call)  # another brand's key verifies nothing of ours
        header = call.headers["X-Taskhub-Signature"]
        assert header.startswith(f"t={call.headers['X-Taskhub-Timestamp']},v1=")
        # a replay later than the tolerance is refused by a receiver that verifies
        assert not verify(keys[0], header, call.body, now=time.time() + 600)
