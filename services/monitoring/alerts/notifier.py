"""The notifier loop: sends queued notifications outside any event handling, with retries.

A pass claims due rows (pushing their next attempt past the time a send can take, so another
replica does not take them meanwhile), sends without holding a transaction, then records the
outcome. A failure is tried again after an exponential backoff with jitter (2 s, 4 s, ... capped
at 5 minutes) until `max_attempts`; then the row stays `failed` with its last error.

Between passes the loop sleeps until a commit that queued a notification wakes it
(`uow.wake(NOTIFIER_WAKEUP)`, in any process of the service) or until the earliest pending
notification is due (a retry, or a claim whose sender died): it never looks on a timer."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter, defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from threading import Event as StopSignal

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from shared.background import Loop, when_due
from shared.events.envelope import utcnow
from shared.wakeups import Signal

from ..models import AlertRule, Notification
from .channels import DeliveryError, SmtpSettings, WebhookSettings, post_webhook, send_email

log = logging.getLogger(__name__)

NOTIFIER_WAKEUP = "notifications"
# a row due now that this pass did not claim is being claimed by another replica: look again soon
SOONEST = timedelta(seconds=0.1)


class Notifier:
    """Sends on a pool of threads, so that one slow receiver holds one thread for at most its
    deadline and never the others' notifications; a brand has at most `per_brand_in_flight`
    sends under way and `per_brand_per_minute` sends a minute (the rest wait their turn, their
    attempts not counted)."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        webhook: WebhookSettings,
        smtp: SmtpSettings,
        *,
        wakeup: Signal | None = None,
        max_attempts: int = 5,
        batch_size: int = 20,
        concurrency: int = 8,
        per_brand_in_flight: int = 2,
        per_brand_per_minute: int = 60,
    ) -> None:
        self.session_factory, self.webhook, self.smtp = session_factory, webhook, smtp
        self.wakeup = wakeup or Signal()
        self.max_attempts, self.batch_size = max_attempts, batch_size
        self.concurrency, self.per_brand_in_flight = concurrency, per_brand_in_flight
        self.per_brand_per_minute = per_brand_per_minute
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="notifier")
        self._lock = threading.Lock()
        self._in_flight: Counter[int] = Counter()
        self._sent: dict[int, deque[float]] = defaultdict(deque)

    def loop(self) -> Loop:
        return Loop("monitoring.notifier", self.run)

    def run(self, stop: StopSignal) -> None:
        """A pass whenever woken or due (shared.background.when_due); the sending threads stop
        with the loop."""
        try:
            when_due("monitoring.notifier", self.wakeup, self.work).run(stop)
        finally:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def work(self) -> datetime | None:
        """One pass; returns when the next one is due (None: not until woken)."""
        if self.send_due() == self.batch_size:
            return utcnow()  # more may be due at once
        return self.next_due()

    def next_due(self) -> datetime | None:
        """When the next pass is needed; None: not until woken (nothing pending, or every sending
        thread busy: each send that ends wakes the loop)."""
        with self._lock:
            if sum(self._in_flight.values()) >= self.concurrency:
                return None
        with self.session_factory() as session:
            due = session.scalar(
                select(func.min(Notification.next_attempt_at)).where(Notification.status == "pending")
            )
        return None if due is None else max(due, utcnow() + SOONEST)

    def backoff(self, attempts: int) -> timedelta:
        return timedelta(seconds=min(300.0, 2.0**attempts) * random.uniform(0.5, 1.0))

    def send_due(self) -> int:
        """Claim what is due and free to go, hand it to the pool; returns how many were handed."""
        with self._lock:
            free = self.concurrency - sum(self._in_flight.values())
        if free <= 0:
            return 0
        claimed = self._claim(min(free, self.batch_size))
        for notification, secret in claimed:
            self._pool.submit(self._send, notification, secret)
        return len(claimed)

    def _admit(self, brand_id: int, now: float) -> float:
        """0 when the brand may send now (and counts it), else the seconds to wait."""
        sent = self._sent[brand_id]
        while sent and sent[0] <= now - 60:
            sent.popleft()
        if len(sent) >= self.per_brand_per_minute:
            return max(1.0, sent[0] + 60 - now)
        if self._in_flight[brand_id] >= self.per_brand_in_flight:
            return 1.0
        sent.append(now)
        self._in_flight[brand_id] += 1
        return 0.0

    def _send(self, notification: Notification, secret: str | None) -> None:
        error: DeliveryError | None = None
        try:
            self._deliver(notification, secret)
        except DeliveryError as failure:
            error = failure
        except Exception as failure:  # noqa: BLE001 - one bad notification must not stop the others
            log.exception("notification %s could not be sent", notification.id)
            error = DeliveryError(f"{type(failure).__name__}: {failure}"[:500], permanent=True)
        finally:
            with self._lock:
                self._in_flight[notification.brand_id] -= 1
        try:
            self._settle(notification.id, error)
        except Exception:
            log.exception(
                "notification %s: outcome not recorded (its lease makes it due again)", notification.id
            )
        # its retry may be due before anything the loop waits for, and a sending thread is free
        self.wakeup.set()

    def _claim(self, limit: int) -> list[tuple[Notification, str | None]]:
        now = utcnow()
        lease = timedelta(seconds=self.webhook.timeout_seconds + self.smtp.timeout_seconds + 30)
        with self.session_factory() as session:
            rows = session.scalars(
                select(Notification)
                .where(Notification.status == "pending", Notification.next_attempt_at <= now)
                .order_by(Notification.next_attempt_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).all()
            secrets = self._secrets(session, {r.rule_id for r in rows if r.channel == "webhook"})
            admitted = []
            clock = time.monotonic()
            with self._lock:
                for row in rows:
                    wait = self._admit(row.brand_id, clock)
                    if wait:  # the brand's turn comes later; not an attempt
                        row.next_attempt_at = now + timedelta(seconds=wait)
                        continue
                    row.attempts += 1
                    row.next_attempt_at = now + lease
                    admitted.append(row)
            session.commit()
            return [
                (row, secrets.get(row.rule_id) or self.webhook.brand_secret(row.brand_id)) for row in admitted
            ]

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
