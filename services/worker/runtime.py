"""The worker process: work is pushed to it, it runs each attempt in a child process, it reports
the attempt to core.

One thread, one loop, one broker connection (a WorkerLink): the loop waits on the broker's socket
and the children's pipes at once, and wakes for nothing else than news or a deadline it knows
(a hold window ending, a timeout, the next heartbeat). Reports are published without waiting;
their confirms come back later on the same connection.

Acknowledgement model (core's side is services/core/execution.py). A work delivery is held
unacknowledged while its attempt runs, for at most the hold window (TASKHUB_HOLD_SECONDS, 1 s):
- an attempt that ends within it is reported once (attempt.completed / attempt.failed, carrying
  its start) and its delivery is acknowledged when the broker confirms the report. A worker that
  dies meanwhile never acknowledged it: the broker gives it to another worker;
- an attempt still running at the end of the window (or that reports progress) is announced with
  attempt.started, and its delivery acknowledged once that is confirmed. From then on core holds
  a lease on it, renewed by this worker's heartbeats, and recovers the task if they stop.
So a short task costs one report, and a task may still run far longer than RabbitMQ's consumer
acknowledgement timeout. Reports are kept until confirmed and published again after a reconnect;
they keep their event ids, so core applies each once.

How much work it holds follows its slots (`_regulate`): one order per slot until an attempt ends
within its hold window, then up to the prefetch; beside announced attempts only what the other slots
can start. Orders waiting here beyond that, and all of them when it shuts down, are handed back: each
goes back to its queue as a new message, and its delivery is acknowledged once the broker confirms
that copy. Rejecting it instead would send it back as a redelivery, which core must count as a
worker's death (see `_run`).
"""

from __future__ import annotations

import logging
import os
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.connection import wait
from threading import Event as StopSignal
from typing import Any

import msgspec
import psutil
from prometheus_client import Counter, Gauge

from shared.events import catalog
from shared.events.bus import (
    EVENTS_EXCHANGE,
    WORK_EXCHANGE,
    Delivery,
    EventBus,
    LinkNews,
    OutgoingMessage,
    WorkerLink,
)
from shared.events.envelope import Envelope, iso, parse_iso, utcnow

from .child import load_handlers
from .config import WorkerConfig
from .pool import ProcessPool, Running, Slot
from .rotation import PriorityRotation
from .sdk import Registry

log = logging.getLogger(__name__)

ATTEMPTS = Counter("taskhub_worker_attempts_total", "Attempts the worker finished", ["outcome"])
BUSY_SLOTS = Gauge("taskhub_worker_busy_slots", "Child processes running an attempt")
UNCONFIRMED = Gauge("taskhub_worker_unconfirmed_reports", "Reports the broker has not confirmed yet")
HANDED_BACK = Counter("taskhub_worker_handed_back_total", "Orders sent back to their queue unstarted")
LAST_HEARTBEAT = Gauge(
    "taskhub_worker_last_heartbeat_timestamp_seconds", "When the worker last sent a heartbeat"
)

CONTROL_EVENTS = ("task.cancelled", "task.attempt_revoked", "task.deleted")
# A cancel/revoke is remembered this long, so a message for that task that is still queued is
# dropped instead of being started and then revoked.
REMEMBER_STOPS_SECONDS = 3600.0
# The longest the loop sleeps without news (it looks at its stop signal in between).
MAX_SLEEP = 1.0
# How often progress reports of one attempt may leave (the newest one wins).
PROGRESS_EVERY = 0.5
# Attempts this worker finished lately: a second delivery of one of them is dropped, not run again.
REMEMBER_FINISHED = 4096


def outgoing(envelope: Envelope) -> OutgoingMessage:
    return OutgoingMessage(EVENTS_EXCHANGE, envelope.event_type, envelope.to_json(), envelope.event_id)


@dataclass
class _Pending:
    """A message the broker has not confirmed yet (a report, or a handed-back order), and the work
    delivery to acknowledge then."""

    message: OutgoingMessage
    settles: Delivery | None
    # what to do once the broker has it (start an attempt that had to be announced first)
    then: Callable[[], None] | None = None
    # a copy of a waiting order: after a lost connection its original is back in the queue, so
    # the copy is not sent again
    handed_back: bool = False


def _count_earlier_deliveries(delivery: Delivery) -> None:
    """A handed-back copy carries the deliveries of the order before it: they count as its own."""
    earlier = delivery.headers.pop(catalog.EARLIER_DELIVERIES_HEADER, None)
    if earlier is not None and earlier.isdigit():
        delivery.delivery_count += int(earlier)
        delivery.redelivered = True


class Worker:
    def __init__(self, config: WorkerConfig, bus: EventBus, registry: Registry | None = None) -> None:
        self.config, self.bus = config, bus
        self.registry = registry or load_handlers(list(config.handler_modules))
        self.rotation = PriorityRotation(config.queues)
        self.pool = ProcessPool(config.concurrency, list(config.handler_modules))
        self.started_at = iso(utcnow())
        self.processed_tasks = self.failed_tasks = 0
        self.link: WorkerLink | None = None
        # deliveries received and not started yet, per priority
        self._waiting: dict[str, deque[Delivery]] = {q: deque() for q in config.queues}
        self._pending: dict[str, _Pending] = {}  # message id -> unconfirmed report or handed-back order
        self._progress: dict[str, tuple[float, Envelope]] = {}  # task id -> (send after, newest)
        self._progress_sent: dict[str, float] = {}  # task id -> when its last progress left
        # task_id -> (attempt, revoke?, when): a cancel stops every attempt up to its own, a
        # revoke exactly one
        self._stopped: dict[str, tuple[int | None, bool, float]] = {}
        self._next_heartbeat = 0.0
        self._finished: OrderedDict[tuple[str, int], None] = OrderedDict()
        # whether the last attempt that ended here ended within its hold window (short)
        self._short_lately = False
        self._prefetch = min(config.prefetch, self.pool.size)  # what the link was last asked to hold

    # ------------------------------------------------------------------ lifecycle

    def run(self, stop: StopSignal) -> None:
        """Work until `stop`, then drain: take nothing new, let running attempts finish within the
        shutdown grace, hand back the rest (core runs them again), flush the reports."""
        self.pool.start()
        self.link = self.bus.worker_link(self.config.name, self.config.queues, self._prefetch, CONTROL_EVENTS)
        log.info("worker %s serving %s with %d slots", self.config.name, self.config.queues, self.pool.size)
        try:
            while not stop.is_set():
                self._tick(taking=True)
            self._drain()
        finally:
            self._shut_down()

    def _drain(self) -> None:
        assert self.link is not None
        self.link.take_work(0)  # first, or the copies could come back here
        self._hand_back()
        deadline = time.monotonic() + self.config.shutdown_grace_seconds
        while any(s.running for s in self.pool.slots) and time.monotonic() < deadline:
            self._tick(taking=False)

    def _shut_down(self) -> None:
        self._hand_back()  # what arrived while draining
        handed_back = [s.running for s in self.pool.slots if s.running]
        self.pool.close()
        for running in handed_back:
            if running.delivery is not None:
                continue  # never announced: its delivery goes back to the queue with the connection
            log.warning("handing back %s to core", running.task_id)
            self._report(catalog.AttemptReleased(**self._ids(running.message), reason="worker shutdown"))
        deadline = time.monotonic() + 10.0
        while self._pending and time.monotonic() < deadline and self.link is not None:
            self._take_news(self.link.poll(0.2))
        if self._pending:
            log.error("%d reports not confirmed at shutdown", len(self._pending))
        if self.link is not None:
            self.link.close()
        BUSY_SLOTS.set(0)

    def _tick(self, taking: bool) -> None:
        assert self.link is not None
        self._wait(self._sleep_time(taking))
        self._take_news(self.link.poll(0))
        self._collect()
        if taking:
            self._fill()
        self._enforce_deadlines()
        self._send_due()
        self._regulate(taking)
        BUSY_SLOTS.set(sum(1 for s in self.pool.slots if s.running))

    def _regulate(self, taking: bool) -> None:
        """Hold as much work as this worker can start soon. Once its attempts end within the hold
        window (short ones), up to the prefetch per queue, so that a freed slot finds its next order
        already here; until then (a new worker, or after long attempts), one order per slot. While
        some slot runs a long attempt (announced: its delivery is acknowledged, so it no longer
        counts against the prefetch), only what the other slots can start, and nothing when every
        slot runs one: the queue's other workers get the rest, and what waits here beyond that goes
        back to its queue."""
        assert self.link is not None
        announced = sum(1 for s in self.pool.slots if s.running is not None and s.running.delivery is None)
        if not taking:
            prefetch = 0
        elif announced:
            prefetch = min(self.config.prefetch, self.pool.size - announced)
        elif self._short_lately:
            prefetch = self.config.prefetch
        else:
            prefetch = min(self.config.prefetch, self.pool.size)
        self.link.take_work(prefetch)
        # handing back only when the prefetch shrinks (or is nothing): copies it took back since,
        # within the new prefetch, stay, so no order goes round in circles
        if taking and (prefetch == 0 or prefetch < self._prefetch):
            self._hand_back(keep=prefetch)
        self._prefetch = prefetch

    def _hand_back(self, keep: int = 0) -> None:
        """Send orders waiting here back to their queues, for another worker or for later: all but
        `keep` of them, the lowest priorities and the latest first."""
        excess = sum(len(waiting) for waiting in self._waiting.values()) - keep
        for priority in reversed(self.rotation.queues):
            waiting = self._waiting[priority]
            while waiting and excess > 0:
                excess -= 1
                delivery = waiting.pop()
                if delivery.message_id is None or delivery.message_id in self._pending:
                    self._settle(delivery, requeue=True)  # no copy can be told apart from it
                    continue
                headers = dict(delivery.headers)
                if delivery.delivery_count > 1:
                    headers[catalog.EARLIER_DELIVERIES_HEADER] = str(delivery.delivery_count - 1)
                copy = OutgoingMessage(
                    WORK_EXCHANGE, delivery.routing_key, delivery.body, delivery.message_id, headers
                )
                self._pending[copy.message_id] = _Pending(copy, settles=delivery, handed_back=True)
                self._publish([copy])
                HANDED_BACK.inc()

    def _sleep_time(self, taking: bool) -> float:
        if taking and any(self._waiting.values()) and any(s.free for s in self.pool.slots):
            return 0.0
        now = time.monotonic()
        due = [self._next_heartbeat, *(at for at, _ in self._progress.values())]
        for slot in self.pool.slots:
            running = slot.running
            if running is not None:
                due += [t for t in (running.hold_until, running.deadline, running.kill_at) if t is not None]
        return max(0.0, min(MAX_SLEEP, min(due) - now))

    def _wait(self, timeout: float) -> None:
        assert self.link is not None
        waitables: list[Any] = [s.conn for s in self.pool.slots if s.running and s.conn is not None]
        waitables += [s.process.sentinel for s in self.pool.slots if s.process is not None]
        fileno = self.link.fileno()
        if fileno is not None:
            waitables.append(fileno)
        if timeout > 0:
            wait(waitables, timeout)

    # ------------------------------------------------------------------ the link's news

    def _take_news(self, news: LinkNews) -> None:
        if news.reconnected:
            # what the lost connection held went back to the queues; reports not confirmed
            # are sent again (same event ids: core applies each once)
            for waiting in self._waiting.values():
                waiting.clear()
            for message_id in [m for m, p in self._pending.items() if p.handed_back]:
                del self._pending[message_id]
            for pending in self._pending.values():
                pending.settles = None
                pending.then = None  # an attempt not started yet: its order went back too
            for slot in self.pool.slots:
                if slot.running is not None and not slot.running.launched:
                    slot.running = None
            self._publish([p.message for p in self._pending.values()])
        for delivery in news.control:
            self._on_control(delivery)
        for delivery in news.work:
            _count_earlier_deliveries(delivery)
            if delivery.routing_key in self._waiting:
                self._waiting[delivery.routing_key].append(delivery)
            else:
                self._settle(delivery, requeue=True)
        for message_id in news.confirmed:
            confirmed = self._pending.pop(message_id, None)
            if confirmed is not None and confirmed.settles is not None:
                self._settle(confirmed.settles)
            if confirmed is not None and confirmed.then is not None:
                confirmed.then()
        if news.refused:
            self._publish([self._pending[m].message for m in news.refused if m in self._pending])
        UNCONFIRMED.set(len(self._pending))

    def _settle(self, delivery: Delivery, requeue: bool | None = None) -> None:
        assert self.link is not None
        if requeue is None:
            self.link.ack(delivery)
        else:
            self.link.reject(delivery, requeue=requeue)

    def _publish(self, messages: list[OutgoingMessage]) -> None:
        if messages and self.link is not None:
            self.link.publish(messages)

    def _report(
        self, report: catalog.Event, settles: Delivery | None = None, then: Callable[[], None] | None = None
    ) -> None:
        """A report core must get: kept until the broker confirms it."""
        envelope = self._envelope(report)
        message = outgoing(envelope)
        self._pending[message.message_id] = _Pending(message, settles, then)
        self._publish([message])

    def _envelope(self, event: catalog.Event) -> Envelope:
        brand = getattr(event, "brand_id", None)
        task_id = getattr(event, "task_id", None)
        attempt = getattr(event, "attempt", None)
        correlation = f"{task_id}:{attempt}" if task_id else None
        return Envelope.of(event, brand, correlation)

    # ------------------------------------------------------------------ taking work

    def _fill(self) -> None:
        """Start a waiting delivery on every free slot, higher priorities first."""
        for slot in self.pool.slots:
            if not slot.free:
                continue
            delivery = self._next_delivery()
            while delivery is not None:
                order = self._accept(delivery)
                if order is not None:
                    self._run(slot, order, delivery)
                    break
                delivery = self._next_delivery()
            if delivery is None:
                return

    def _next_delivery(self) -> Delivery | None:
        for priority in self.rotation.order():
            waiting = self._waiting.get(priority)
            if waiting:
                return waiting.popleft()
        return None

    def _accept(self, delivery: Delivery) -> catalog.WorkOrder | None:
        """The order, if it is to be started; else its delivery is settled here and None returned."""
        try:
            order = catalog.read_work(delivery.body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            log.error("unreadable work message %s: parked in the dead-letter queue", delivery.message_id)
            self._settle(delivery, requeue=False)
            return None
        if self._was_stopped(order) or self._runs(order) or (order.task_id, order.attempt) in self._finished:
            # cancelled, revoked or deleted while it waited, or a second delivery of an attempt
            # this worker runs or ran already (its first hold was lost): never start it again
            log.info("dropped %s attempt %d (stopped, running or done here)", order.task_id, order.attempt)
            self._settle(delivery)
            return None
        if self.registry.get(order.task_type) is None:
            now = utcnow()
            self._report(
                catalog.AttemptFailed(
                    **self._ids(order),
                    started_at=iso(now),
                    finished_at=iso(now) or "",
                    error_message=f"No handler for task type {order.task_type!r} on worker "
                    f"{self.config.name}: every worker of a queue must register every type sent to it.",
                    retryable=False,
                    metrics=self._metrics(order, now, 0, {}),
                ),
                settles=delivery,
            )
            return None
        return order

    def _run(self, slot: Slot, order: catalog.WorkOrder, delivery: Delivery) -> None:
        spec = self.registry.get(order.task_type)
        assert spec is not None
        now = utcnow()
        minutes = order.timeout_minutes or spec.timeout_minutes or 60
        message = msgspec.to_builtins(order)
        running = Running(
            message=message,
            started_at=iso(now) or "",
            started_monotonic=time.monotonic(),
            deadline=time.monotonic() + float(minutes) * 60 * self.config.timeout_scale,
            delivery=delivery,
            hold_until=time.monotonic() + self.config.hold_seconds,
        )
        job = {
            "message": message,
            "worker_name": self.config.name,
            "persistence": {
                "url": self.config.persistence_url,
                "token": self.config.token(message) if spec.persistent else None,
                "retry_seconds": self.config.persistence_retry_seconds,
                "delivery": delivery.delivery_count,
            },
        }
        if delivery.delivery_count > 1:
            # a redelivered order may be one that kills its worker: core hears of it, and the
            # delivery is let go, before it runs; core counts the earlier deaths and parks an order
            # that keeps killing its workers after a bounded number of them
            self.pool.reserve(slot, running)
            self._announce(running, then=lambda: self._launch_reserved(slot, job, running))
            return
        self._launch(slot, job, running)

    def _launch_reserved(self, slot: Slot, job: dict[str, Any], running: Running) -> None:
        if slot.running is not running:
            return  # the link was lost meanwhile: its order went back to the queue
        if running.stop_reason is not None:
            slot.running = None  # revoked or cancelled while its announcement was on its way
            return
        self._launch(slot, job, running)

    def _launch(self, slot: Slot, job: dict[str, Any], running: Running) -> None:
        try:
            self.pool.submit(slot, job, running)
        except OSError:  # the child died just now: _collect sees it and reports the attempt
            log.warning("child %d gone before %s started", slot.index, running.task_id)

    def _announce(self, running: Running, then: Callable[[], None] | None = None) -> None:
        """The attempt outlived its hold window (or is a redelivery): tell core it runs (core takes
        a lease), and let the delivery go once the broker has that."""
        if running.delivery is None:
            return
        delivery, running.delivery, running.hold_until = running.delivery, None, None
        report = catalog.AttemptStarted(
            **self._ids(running.message), started_at=running.started_at, deliveries=delivery.delivery_count
        )
        self._report(report, settles=delivery, then=then)

    # ------------------------------------------------------------------ following children

    def _collect(self) -> None:
        busy = [s for s in self.pool.slots if s.running and s.conn is not None]
        for slot in busy:
            while slot.running is not None and slot.conn is not None:
                try:
                    if not slot.conn.poll():
                        break
                    kind, payload = slot.conn.recv()
                except (EOFError, OSError):
                    break
                if kind == "progress":
                    self._on_progress(slot.running, payload)
                elif kind == "outcome":
                    running, slot.running = slot.running, None
                    self._on_outcome(running, payload)
        for slot in self.pool.slots:
            if slot.process is not None and not slot.process.is_alive():
                self._on_child_death(slot)

    def _on_progress(self, running: Running, payload: dict[str, Any]) -> None:
        if running.stop_reason is not None:
            return
        self._announce(running)  # a task that reports progress is a long one: core should know
        running.progress_percentage = int(payload.get("progress_percentage") or 0)
        running.step = payload.get("step")
        report = catalog.AttemptProgress(
            **self._ids(running.message),
            progress_percentage=running.progress_percentage,
            current_step=running.step,
        )
        send_after = self._progress_sent.get(running.task_id, 0.0) + PROGRESS_EVERY
        self._progress[running.task_id] = (send_after, self._envelope(report))

    def _on_outcome(self, running: Running, outcome: dict[str, Any]) -> None:
        self._short_lately = running.delivery is not None  # never announced
        self._finished[(running.task_id, running.attempt)] = None
        while len(self._finished) > REMEMBER_FINISHED:
            self._finished.popitem(last=False)
        self._progress.pop(running.task_id, None)
        self._progress_sent.pop(running.task_id, None)
        kind = outcome.get("kind")
        metrics = self._metrics_of(running, outcome.get("metrics") or {})
        if running.stop_reason == "timeout":
            self._report_timeout(running, metrics)
        elif running.stop_reason is not None or kind in ("cancelled", "paused"):
            # cancelled/revoked here, or paused/cancelled by persistence: core already knows (a
            # late result of a cancelled attempt would be ignored anyway)
            ATTEMPTS.labels(kind if running.stop_reason is None else running.stop_reason).inc()
            if running.delivery is not None:
                self._settle(running.delivery)
        elif kind == "completed":
            self.processed_tasks += 1
            ATTEMPTS.labels("completed").inc()
            self._report(
                catalog.AttemptCompleted(
                    **self._ran(running),
                    result_data=outcome.get("result") or {},
                    metrics=metrics,
                ),
                settles=running.delivery,
            )
        else:
            self._report_failure(
                running,
                str(outcome.get("error") or "failed"),
                outcome.get("traceback"),
                bool(outcome.get("retryable")),
                metrics,
            )

    def _on_child_death(self, slot: Slot) -> None:
        running = slot.running
        code = slot.process.exitcode if slot.process is not None else None
        self.pool.replace(slot)
        if running is None:
            log.warning("idle child %d died (exit code %s); replaced", slot.index, code)
            return
        metrics = self._metrics_of(running, {})
        if running.stop_reason == "timeout":
            self._report_timeout(running, metrics)
        elif running.stop_reason is None:
            self._report_failure(
                running,
                f"The handler's process died (exit code {code}) while running this task.",
                None,
                True,
                metrics,
            )
        elif running.delivery is not None:
            self._settle(running.delivery)

    def _enforce_deadlines(self) -> None:
        now = time.monotonic()
        for slot in self.pool.slots:
            running = slot.running
            if running is None:
                continue
            if running.hold_until is not None and now >= running.hold_until and running.stop_reason is None:
                self._announce(running)
            if running.stop_reason is None and running.deadline is not None and now >= running.deadline:
                log.warning("%s ran past its timeout; stopping it", running.task_id)
                self.pool.request_stop(slot, "timeout", min(1.0, self.config.cancel_grace_seconds))
            elif running.kill_at is not None and now >= running.kill_at:
                log.warning(
                    "%s did not stop within its grace (%s); killing its process",
                    running.task_id,
                    running.stop_reason,
                )
                metrics = self._metrics_of(running, {})
                self.pool.replace(slot)
                if running.stop_reason == "timeout":
                    self._report_timeout(running, metrics)
                else:
                    ATTEMPTS.labels(running.stop_reason or "killed").inc()
                    if running.delivery is not None:
                        self._settle(running.delivery)

    def _send_due(self) -> None:
        """Progress (the newest per attempt, at most every PROGRESS_EVERY) and heartbeats."""
        now = time.monotonic()
        due = [task_id for task_id, (at, _) in self._progress.items() if at <= now]
        messages = []
        for task_id in due:
            _, envelope = self._progress.pop(task_id)
            messages.append(outgoing(envelope))
            self._progress_sent[task_id] = now
        if now >= self._next_heartbeat:
            messages.append(outgoing(self._heartbeat()))
            LAST_HEARTBEAT.set_to_current_time()
            busy = any(s.running for s in self.pool.slots)
            every = self.config.heartbeat_seconds if busy else self.config.idle_heartbeat_seconds
            self._next_heartbeat = now + every
        self._publish(messages)  # fire and forget: a newer one follows

    # ------------------------------------------------------------------ cancellations

    def _on_control(self, delivery: Delivery) -> None:
        self._settle(delivery)  # a signal: acting on it now is all there is to do
        try:
            envelope = Envelope.from_json(delivery.body)
        except (msgspec.DecodeError, ValueError, KeyError):
            return
        data = envelope.data
        task_id = data.get("task_id")
        raw_attempt = data.get("attempt")
        attempt = int(raw_attempt) if raw_attempt is not None else None
        revoke = envelope.event_type == "task.attempt_revoked"
        if revoke and data.get("worker_name") not in (None, self.config.name):
            return  # another worker's run of that attempt (a second delivery) is revoked
        self._stopped[str(task_id)] = (attempt, revoke, time.monotonic())
        for slot in self.pool.slots:
            running = slot.running
            if running is None or running.task_id != task_id:
                continue
            if revoke and attempt is not None and running.attempt != attempt:
                continue
            if not revoke and attempt is not None and running.attempt > attempt:
                continue  # a newer attempt than the one cancelled (a retry after the cancel)
            log.info("stopping %s attempt %d (%s)", task_id, running.attempt, envelope.event_type)
            self.pool.request_stop(
                slot, "revoked" if revoke else "cancelled", self.config.cancel_grace_seconds
            )
        cutoff = time.monotonic() - REMEMBER_STOPS_SECONDS
        for key in [k for k, (_, _, at) in self._stopped.items() if at < cutoff]:
            del self._stopped[key]

    def _runs(self, order: catalog.WorkOrder) -> bool:
        return any(
            s.running is not None
            and s.running.task_id == order.task_id
            and s.running.attempt == order.attempt
            for s in self.pool.slots
        )

    def _was_stopped(self, order: catalog.WorkOrder) -> bool:
        """Was this order's attempt cancelled, revoked or deleted while it waited in its queue?
        (A manual retry after a cancel is a newer attempt: it runs.)"""
        record = self._stopped.get(order.task_id)
        if record is None:
            return False
        attempt, revoke, _ = record
        if attempt is None:
            return True
        return order.attempt == attempt if revoke else order.attempt <= attempt

    # ------------------------------------------------------------------ reports

    def _report_timeout(self, running: Running, metrics: catalog.AttemptMetrics) -> None:
        minutes = running.message.get("timeout_minutes") or 60
        self._report_failure(
            running,
            f"Timed out: the attempt ran past timeout_minutes={minutes} and was stopped.",
            None,
            True,
            metrics,
        )

    def _report_failure(
        self,
        running: Running,
        error: str,
        trace: str | None,
        retryable: bool,
        metrics: catalog.AttemptMetrics,
    ) -> None:
        message = running.message
        spec = self.registry.get(message["task_type"])
        retry_count = int(message.get("retry_count") or 0)
        delay = round(spec.retry.delay(retry_count), 3) if spec and retryable else None
        self.failed_tasks += 1
        ATTEMPTS.labels("failed").inc()
        self._report(
            catalog.AttemptFailed(
                **self._ran(running),
                error_message=error,
                traceback=trace,
                retryable=bool(spec) and retryable,
                retry_delay_seconds=delay,
                metrics=metrics,
            ),
            settles=running.delivery,
        )

    def _ids(self, message: Any) -> dict[str, Any]:
        get: Callable[[str], Any] = (
            message.get if isinstance(message, dict) else lambda key: getattr(message, key)
        )
        return {
            "id": int(get("id")),
            "task_id": str(get("task_id")),
            "attempt": int(get("attempt") or 0),
            "worker_name": self.config.name,
        }

    def _ran(self, running: Running) -> dict[str, Any]:
        """How an outcome report names its attempt, and when it ran (it ends now)."""
        return {
            **self._ids(running.message),
            "started_at": running.started_at,
            "finished_at": iso(utcnow()) or "",
        }

    def _metrics_of(self, running: Running, reported: dict[str, Any]) -> catalog.AttemptMetrics:
        elapsed_ms = int((time.monotonic() - running.started_monotonic) * 1000)
        return self._metrics(running.message, parse_iso(running.started_at), elapsed_ms, reported)

    def _metrics(
        self, message: Any, started_at: datetime | None, execution_ms: int, reported: dict[str, Any]
    ) -> catalog.AttemptMetrics:
        """The attempt's metrics: measured here (time, queue wait) and in the child (memory, CPU,
        the handler's counters)."""
        get = message.get if isinstance(message, dict) else lambda key: getattr(message, key, None)
        dispatched = parse_iso(get("dispatched_at"))
        wait_ms = int((started_at - dispatched).total_seconds() * 1000) if started_at and dispatched else None
        return catalog.AttemptMetrics(
            execution_time_ms=execution_ms,
            memory_usage_mb=reported.get("memory_usage_mb"),
            cpu_usage_percent=reported.get("cpu_usage_percent"),
            queue_wait_time_ms=max(0, wait_ms) if wait_ms is not None else None,
            api_calls_count=reported.get("api_calls_count", 0),
            tokens_used=reported.get("tokens_used", 0),
            cost_usd=reported.get("cost_usd", 0.0),
            task_type=get("task_type"),
            priority=get("priority"),
            retry_count=int(get("retry_count") or 0),
            worker_name=self.config.name,
        )

    def _heartbeat(self) -> Envelope:
        active = [r for r in (s.running for s in self.pool.slots) if r is not None]
        beat = catalog.WorkerHeartbeat(
            worker_name=self.config.name,
            queues=list(self.config.queues),
            concurrency=self.pool.size,
            task_types=[spec.describe() for spec in self.registry.specs()],
            active_task_ids=[r.task_id for r in active],
            active_tasks=[
                catalog.ActiveAttempt(
                    id=int(r.message["id"]),
                    task_id=r.task_id,
                    attempt=r.attempt,
                    brand_id=r.message.get("brand_id"),
                    task_type=r.message.get("task_type"),
                    started_at=r.started_at,
                    timeout_minutes=r.message.get("timeout_minutes"),
                )
                for r in active
            ],
            cpu_percent=psutil.cpu_percent(None),
            memory_percent=psutil.virtual_memory().percent,
            load_average=[round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
            processed_tasks=self.processed_tasks,
            failed_tasks=self.failed_tasks,
            started_at=self.started_at,
        )
        return Envelope.of(beat, None)
