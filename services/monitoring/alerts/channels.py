"""How a notification leaves: a signed JSON POST to a webhook, or an e-mail through SMTP.
Both raise DeliveryError on failure; the notifier decides whether to try again."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import json
import smtplib
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from shared.config import Settings, env_bool, env_float, env_int

from .egress import EgressPolicy, UnsafeWebhook, check_url, resolve

SIGNATURE_HEADER = "X-Taskhub-Signature"
TIMESTAMP_HEADER = "X-Taskhub-Timestamp"
MAX_RESPONSE_BYTES = 64 * 1024  # a receiver's answer is read only this far


class DeliveryError(Exception):
    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.permanent = permanent


@dataclass(frozen=True)
class WebhookSettings:
    # TASKHUB_WEBHOOK_SECRET: the master key of the per-brand signing keys of rules created before
    # rules had keys of their own (docs/monitoring.md); never itself a signing key
    default_secret: str | None = None
    timeout_seconds: float = 5.0  # the whole send: connect, request, answer (not per read)
    egress: EgressPolicy = EgressPolicy()

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookSettings:
        return cls(
            default_secret=settings.get("TASKHUB_WEBHOOK_SECRET") or None,
            timeout_seconds=env_float(settings, "TASKHUB_WEBHOOK_TIMEOUT_SECONDS", 5.0),
        )

    def brand_secret(self, brand_id: int) -> str | None:
        """A key of the brand's own for rules with none: one brand can never forge another's."""
        if not self.default_secret:
            return None
        return hmac.new(
            self.default_secret.encode(), f"brand:{brand_id}".encode(), hashlib.sha256
        ).hexdigest()


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


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """`t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`: the timestamp is signed, so a
    receiver that refuses old ones (docs/monitoring.md: 5 minutes) cannot be replayed to."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(
    secret: str, header: str, body: bytes, tolerance_seconds: int = 300, now: float | None = None
) -> bool:
    """What a receiver does (docs/monitoring.md): recompute the HMAC over "<t>.<raw body>",
    compare in constant time, and refuse a timestamp older (or newer) than the tolerance."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields.get("t", ""))
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_seconds:
        return False
    return hmac.compare_digest(signature(secret, timestamp, body), f"t={timestamp},v1={fields.get('v1', '')}")


def body_of(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


class _PinnedHTTP(http.client.HTTPConnection):
    """Connects to the address egress.resolve checked, whatever the name resolves to now."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self.address = address

    def connect(self) -> None:
        raw = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)  # type: ignore[attr-defined]


def post_webhook(
    settings: WebhookSettings, url: str, payload: dict[str, Any], secret: str | None, delivery_id: str
) -> None:
    """One signed POST within `timeout_seconds` in all (a receiver that answers a byte at a time
    is cut at the deadline), to a public address only, never following a redirect."""
    try:
        target = check_url(url, settings.egress)
        address = resolve(target, settings.egress)
    except UnsafeWebhook as error:
        raise DeliveryError(f"refused: {error}", permanent=True) from None
    body = body_of(payload)
    now = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "taskhub-monitoring",
        "X-Taskhub-Event": "alert.triggered",
        "X-Taskhub-Delivery": delivery_id,
        TIMESTAMP_HEADER: str(now),
    }
    if secret:
        headers[SIGNATURE_HEADER] = signature(secret, now, body)
    kind = _PinnedHTTPS if target.scheme == "https" else _PinnedHTTP
    connection = kind(target.host, target.port, address, settings.timeout_seconds)
    expired = threading.Event()
    deadline = threading.Timer(settings.timeout_seconds, _cut, [connection, expired])
    deadline.start()
    try:
        connection.request("POST", target.path, body=body, headers=headers)
        response = connection.getresponse()
        response.read(MAX_RESPONSE_BYTES)
        status = response.status
        if expired.is_set():
            raise OSError("cut at the deadline")
    except (OSError, http.client.HTTPException) as error:
        if expired.is_set():
            raise DeliveryError(f"no answer within {settings.timeout_seconds:g} s") from None
        raise DeliveryError(f"{type(error).__name__}: {error}"[:500]) from None
    finally:
        deadline.cancel()
        connection.close()
    if not 200 <= status < 300:
        raise DeliveryError(f"HTTP {status}")


def _cut(connection: http.client.HTTPConnection, expired: threading.Event) -> None:
    """The deadline: any read or write blocked on the socket returns at once."""
    expired.set()  # before the socket wakes its reader, which then reports the deadline
    sock = connection.sock
    if sock is not None:
        with contextlib.suppress(OSError):  # already closed: nothing to cut
            sock.shutdown(socket.SHUT_RDWR)


def header_safe(text: str) -> str:
    """No line break (nor other control character) reaches a mail header."""
    return "".join(" " if ch in "\r\n\t" or ord(ch) < 32 or ord(ch) == 127 else ch for ch in text)


def send_email(settings: SmtpSettings, recipients: list[str], payload: dict[str, Any]) -> None:
    if not settings.host:
        raise DeliveryError("SMTP is not configured (TASKHUB_SMTP_HOST)", permanent=True)
    rule = payload["rule"]
    message = EmailMessage()
    prefix = "[taskhub test] " if payload.get("test") else "[taskhub] "
    message["Subject"] = header_safe(f"{prefix}{rule['severity'].upper()} alert: {rule['name']}")
    message["From"] = settings.sender
    message["To"] = header_safe(", ".join(recipients))
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
    except (ValueError, TypeError, UnicodeError) as error:  # a message no retry can fix
        raise DeliveryError(f"{type(error).__name__}: {error}"[:500], permanent=True) from None
