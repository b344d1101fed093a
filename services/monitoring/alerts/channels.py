"""How a notification leaves: a signed JSON POST to a webhook, or an e-mail through SMTP.
Both raise DeliveryError on failure; the notifier decides whether to try again."""

from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import requests

from shared.config import Settings, env_bool, env_float, env_int

SIGNATURE_HEADER = "X-Taskhub-Signature"


class DeliveryError(Exception):
    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.permanent = permanent


@dataclass(frozen=True)
class WebhookSettings:
    default_secret: str | None = None  # TASKHUB_WEBHOOK_SECRET: for rules without their own
    timeout_seconds: float = 5.0

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookSettings:
        return cls(
            default_secret=settings.get("TASKHUB_WEBHOOK_SECRET") or None,
            timeout_seconds=env_float(settings, "TASKHUB_WEBHOOK_TIMEOUT_SECONDS", 5.0),
        )


@dataclass(frozen=True)
class SmtpSettings:
    host: str | None = None
    port: int = 25
    user: str | None = None
    password: str | None = None
    starttls: bool = False
    sender: str = "taskhub@localhost"
    timeout_seconds: float = 10.0

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpSettings:
        return cls(
            host=settings.get("TASKHUB_SMTP_HOST") or None,
            port=env_int(settings, "TASKHUB_SMTP_PORT", 25),
            user=settings.get("TASKHUB_SMTP_USER") or None,
            password=settings.get("TASKHUB_SMTP_PASSWORD") or None,
            starttls=env_bool(settings, "TASKHUB_SMTP_STARTTLS", False),
            sender=settings.get("TASKHUB_SMTP_FROM") or "taskhub@localhost",
            timeout_seconds=env_float(settings, "TASKHUB_SMTP_TIMEOUT_SECONDS", 10.0),
        )


def signature(secret: str, body: bytes) -> str:
    """`sha256=<hex HMAC-SHA256 of the raw body>`, as GitHub-style receivers verify it."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def body_of(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def post_webhook(
    settings: WebhookSettings, url: str, payload: dict[str, Any], secret: str | None, delivery_id: str
) -> None:
    body = body_of(payload)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "taskhub-monitoring",
        "X-Taskhub-Event": "alert.triggered",
        "X-Taskhub-Delivery": delivery_id,
    }
    if secret:
        headers[SIGNATURE_HEADER] = signature(secret, body)
    try:
        response = requests.post(
            url, data=body, headers=headers, timeout=settings.timeout_seconds, allow_redirects=False
        )
    except requests.RequestException as error:
        raise DeliveryError(f"{type(error).__name__}: {error}"[:500]) from None
    if not 200 <= response.status_code < 300:
        raise DeliveryError(f"HTTP {response.status_code}")


def send_email(settings: SmtpSettings, recipients: list[str], payload: dict[str, Any]) -> None:
    if not settings.host:
        raise DeliveryError("SMTP is not configured (TASKHUB_SMTP_HOST)", permanent=True)
    rule = payload["rule"]
    message = EmailMessage()
    prefix = "[taskhub test] " if payload.get("test") else "[taskhub] "
    message["Subject"] = f"{prefix}{rule['severity'].upper()} alert: {rule['name']}"
    message["From"] = settings.sender
    message["To"] = ", ".join(recipients)
    message.set_content(
        f"{payload['message']}\n\nBrand: {payload['brand']['name'] or payload['brand']['id']}\n"
        f"Tasks: {', '.join(payload['task_ids']) or '-'}\nAt: {payload['triggered_at']}\n\n"
        + json.dumps(payload, indent=2)
    )
    try:
        with smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout_seconds) as smtp:
            if settings.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if settings.user:
                smtp.login(settings.user, settings.password or "")
            smtp.send_message(message)
    except (OSError, smtplib.SMTPException) as error:
        raise DeliveryError(f"{type(error).__name__}: {error}"[:500]) from None
