"""The notifier loop: sends queued notifications outside any event handling, with retries.

A pass claims due rows (pushing their next attempt past the time a send can take, so another
replica does not take them meanwhile), sends without holding a transaction, then records the
outcome. A failure is tried again after an exponential backoff with jitter (2 s, 4 s, ... capped
at 5 minutes) until `max_attempts`; then the row stays `failed` with its last error."""

from __future__ import annotations

import logging
import random
from datetime import timedelta
from threading import Event as StopSignal

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from shared.events.envelope import utcnow

from ..models import AlertRule, Notification
from .channels import DeliveryError, SmtpSettings, WebhookSettings, post_webhook, send_email

log = logging.getLogger(__name__)


class Notifier:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        webhook: WebhookSettings,
        smtp: SmtpSettings,
        *,
        poll_interval: float = 0.5,
        max_attempts: int = 5,
        batch_size: int = 20,
    ) -> None:
        self.session_factory, self.webhook, self.smtp = session_factory, webhook, smtp
        self.poll_interval, self.max_attempts, self.batch_size = poll_interval, max_attempts, batch_size

    def run(self, stop: StopSignal) -> None:
        while not stop.is_set():
            try:
                busy = self.send_due() > 0
            except Exception:
                log.exception("notifier pass failed")
                busy = False
            if not busy:
                stop.wait(self.poll_interval)

    def backoff(self, attempts: int) -> timedelta:
        return timedelta(seconds=min(300.0, 2.0**attempts) * random.uniform(0.5, 1.0))

    def send_due(self) -> int:
        claimed = self._claim()
        for notification, secret in claimed:
            error: DeliveryError | None = None
            try:
                self._deliver(notification, secret)
            except DeliveryError as failure:
                error = failure
            self._settle(notification.id, error)
        return len(claimed)

    def _claim(self) -> list[tuple[Notification, str | None]]:
        now = utcnow()
        lease = timedelta(seconds=self.webhook.timeout_seconds + self.smtp.timeout_seconds + 30)
        with self.session_factory() as session:
            rows = session.scalars(
                select(Notification)
                .where(Notification.status == "pending", Notification.next_attempt_at <= now)
                .order_by(Notification.next_attempt_at)
                .limit(self.batch_size)
                .with_for_update(skip_locked=True)
            ).all()
            secrets = self._secrets(session, {r.rule_id for r in rows if r.channel == "webhook"})
            for row in rows:
                row.attempts += 1
                row.next_attempt_at = now + lease
            session.commit()
            return [(row, secrets.get(row.rule_id) or self.webhook.default_secret) for row in rows]

    @staticmethod
    def _secrets(session: Session, rule_ids: set[int | None]) -> dict[int | None, str | None]:
        if not rule_ids:
            return {}
        rows = session.execute(
            select(AlertRule.id, AlertRule.webhook_secret).where(AlertRule.id.in_(rule_ids))
        ).all()
        return {rule_id: secret for rule_id, secret in rows}

    def _deliver(self, notification: Notification, secret: str | None) -> None:
        if notification.channel == "webhook":
            post_webhook(
                self.webhook, notification.target, notification.payload, secret, str(notification.id)
            )
        else:
            send_email(self.smtp, notification.target.split(","), notification.payload)

    def _settle(self, notification_id: int, error: DeliveryError | None) -> None:
        with self.session_factory() as session:
            row = session.get(Notification, notification_id)
            if row is None:  # its alert event was deleted meanwhile
                return
            now = utcnow()
            if error is None:
                row.status, row.sent_at, row.last_error = "sent", now, None
            elif error.permanent or row.attempts >= self.max_attempts:
                row.status, row.last_error = "failed", str(error)[:500]
                log.warning("notification %s failed for good: %s", row.id, error)
            else:
                row.last_error = str(error)[:500]
                row.next_attempt_at = now + self.backoff(row.attempts)
            session.commit()
