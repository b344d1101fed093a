"""The worker's outgoing events. The worker has no database (no outbox), so this is its memory of
what must still reach the broker:

- results (`task.completed`, `task.failed`) are kept, in order, and published again until the
  broker confirms them: a broker outage delays them, it never drops them;
- progress and heartbeats are coalesced: only the newest one per task (per worker) waits, an
  outage drops the stale ones and nothing is lost that matters.

Events keep their `event_id` across retries, so core's inbox applies each once."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from threading import Event as StopSignal

from prometheus_client import Counter

from shared.events.bus import EVENTS_EXCHANGE, BusUnavailable, EventBus, OutgoingMessage
from shared.events.envelope import Envelope

log = logging.getLogger(__name__)

PUBLISH_RETRIES = Counter("taskhub_worker_publish_retries_total", "Worker event batches the broker refused")


def outgoing(envelope: Envelope) -> OutgoingMessage:
    return OutgoingMessage(EVENTS_EXCHANGE, envelope.event_type, envelope.to_json(), envelope.event_id)


class EventPublisher:
    def __init__(self, bus: EventBus, heartbeat: Callable[[], Envelope], heartbeat_seconds: float) -> None:
        self.bus = bus
        self.heartbeat, self.heartbeat_seconds = heartbeat, heartbeat_seconds
        self._reliable: list[Envelope] = []
        self._latest: dict[str, Envelope] = {}  # coalescing key -> newest envelope
        self._cond = threading.Condition()
        self._next_heartbeat = 0.0

    def publish_now(self, envelopes: list[Envelope]) -> None:
        """Publish on the caller's thread and wait for the confirms (raises BusUnavailable)."""
        self.bus.publish([outgoing(e) for e in envelopes])

    def reliable(self, envelope: Envelope) -> None:
        with self._cond:
            self._reliable.append(envelope)
            self._cond.notify()

    def latest(self, key: str, envelope: Envelope) -> None:
        with self._cond:
            self._latest[key] = envelope
            self._cond.notify()

    def heartbeat_soon(self) -> None:
        with self._cond:
            self._next_heartbeat = 0.0
            self._cond.notify()

    def pending(self) -> int:
        with self._cond:
            return len(self._reliable) + len(self._latest)

    def run(self, stop: StopSignal) -> None:
        """Publish until `stop`; the caller flushes afterwards with `flush`."""
        delay = 0.0
        while not stop.is_set():
            with self._cond:
                if not (self._reliable or self._latest) and time.monotonic() < self._next_heartbeat:
                    self._cond.wait(min(0.5, max(0.0, self._next_heartbeat - time.monotonic())))
            if stop.is_set():
                break
            if self._publish_once():
                delay = 0.0
            else:
                delay = min(max(delay * 2, 0.2), 5.0)
                stop.wait(delay)

    def flush(self, timeout: float) -> bool:
        """Publish what is left (results first), retrying until confirmed or `timeout`."""
        deadline = time.monotonic() + timeout
        while self.pending() and time.monotonic() < deadline:
            if not self._publish_once(heartbeat=False):
                time.sleep(0.2)
        return self.pending() == 0

    def _publish_once(self, heartbeat: bool = True) -> bool:
        with self._cond:
            latest, reliable = dict(self._latest), list(self._reliable)
            self._latest.clear()
        batch = list(latest.values())
        if heartbeat and time.monotonic() >= self._next_heartbeat:
            batch.append(self.heartbeat())
            self._next_heartbeat = time.monotonic() + self.heartbeat_seconds
        batch += reliable
        if not batch:
            return True
        try:
            self.bus.publish([outgoing(e) for e in batch])
        except BusUnavailable as exc:
            PUBLISH_RETRIES.inc()
            log.warning("events not confirmed (%r); %d results kept for retry", exc, len(reliable))
            with self._cond:
                for key, envelope in latest.items():
                    self._latest.setdefault(key, envelope)  # a newer one may have arrived meanwhile
            self._next_heartbeat = 0.0
            return False
        with self._cond:
            del self._reliable[: len(reliable)]
        return True
