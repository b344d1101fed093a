"""The worker process: takes work when it has a free slot, runs it in a child process, reports.

Acknowledgement model (core's side is services/core/execution.py): for each work message the
worker publishes `task.started` (confirmed by the broker), then acknowledges the message. From then
on core holds a lease on the running task, which the worker renews with `worker.heartbeat`
(`active_task_ids`). Nothing stays unacknowledged while a handler runs, so a task may run far longer
than RabbitMQ's consumer acknowledgement timeout (30 minutes by default); a worker that dies stops
renewing, and core's reaper dispatches the task again after TASKHUB_LEASE_SECONDS (and parks it
after TASKHUB_MAX_LOST_DELIVERIES losses). Results are published with confirms and retried until
the broker takes them (publisher.py).

One thread runs everything that touches the pool and the work queues (this module's loop); a
publisher thread sends events and heartbeats; a subscription thread hears cancellations and
revocations on the worker's own exclusive queue and hands them to the loop."""

from __future__ import annotations

import json
import logging
import os
import queue
import time
from datetime import datetime
from multiprocessing.connection import wait
from threading import Event as StopSignal
from typing import Any

import psutil
from prometheus_client import Counter, Gauge

from shared.background import Loop, start_loops
from shared.events.bus import BusUnavailable, Delivery, EventBus, WorkQueueClient
from shared.events.envelope import Envelope, iso, parse_iso, utcnow

from .child import load_handlers
from .config import WorkerConfig
from .pool import ProcessPool, Running, Slot
from .publisher import EventPublisher
from .rotation import PriorityRotation
from .sdk import Registry

log = logging.getLogger(__name__)

ATTEMPTS = Counter("taskhub_worker_attempts_total", "Attempts the worker finished", ["outcome"])
BUSY_SLOTS = Gauge("taskhub_worker_busy_slots", "Child processes running an attempt")

MESSAGE_KEYS = ("id", "task_id", "brand_id", "task_type", "attempt")
# A cancel/revoke is remembered this long, so a message for that task that is still queued is
# dropped instead of being started and then revoked.
REMEMBER_STOPS_SECONDS = 3600.0
IDLE_WAIT_MAX = 0.25
BUSY_WAIT = 0.1


class Worker:
    def __init__(self, config: WorkerConfig, bus: EventBus, registry: Registry | None = None) -> None:
        self.config, self.bus = config, bus
        self.registry = registry or load_handlers(list(config.handler_modules))
        self.rotation = PriorityRotation(config.queues)
        self.pool = ProcessPool(config.concurrency, list(config.handler_modules))
        self.publisher = EventPublisher(bus, self._heartbeat, config.heartbeat_seconds)
        self.started_at = iso(utcnow())
        self.processed_tasks = self.failed_tasks = 0
        self._control: queue.SimpleQueue[Envelope] = queue.SimpleQueue()
        # task_id -> (attempt, revoke?, when): a cancel stops every attempt up to its own, a
        # revoke exactly one
        self._stopped: dict[str, tuple[int | None, bool, float]] = {}
        self._idle_wait = 0.0
        self._broker_back_at = 0.0

    # ------------------------------------------------------------------ lifecycle

    def run(self, stop: StopSignal) -> None:
        """Work until `stop`, then drain: take nothing new, let running attempts finish within the
        shutdown grace, hand back the rest (killed; core's lease recovers them), flush results."""
        self.pool.start()
        publisher_stop, control_stop = StopSignal(), StopSignal()
        control = self.bus.subscription(
            f"worker.{self.config.name}.control",
            ["task.cancelled", "task.attempt_revoked"],
            self._on_control,
            exclusive=True,
        )
        # restarted if they crash; stopped in order at the end (control first, publisher last)
        threads = [
            *start_loops([Loop("worker.publisher", self.publisher.run)], publisher_stop),
            *start_loops([Loop("worker.control", control.run)], control_stop),
        ]
        work = self.bus.work_client()
        log.info("worker %s serving %s with %d slots", self.config.name, self.config.queues, self.pool.size)
        try:
            while not stop.is_set():
                self._tick(work, taking=True)
            self._drain(work)
        finally:
            work.close()
            control_stop.set()
            handed_back = [s.running for s in self.pool.slots if s.running]
            if handed_back:
                log.warning(
                    "handing back %d running tasks to core: %s",
                    len(handed_back),
                    [r.task_id for r in handed_back],
                )
            self.pool.close()
            for running in handed_back:
                # core runs it again at once, without counting a lost delivery (rolling updates)
                self.publisher.reliable(
                    self._event("task.released", running.message, reason="worker shutdown")
                )
            publisher_stop.set()
            threads[0].join(5)
            if not self.publisher.flush(timeout=10.0):
                log.error("%d events not confirmed at shutdown", self.publisher.pending())
            threads[1].join(2)
            BUSY_SLOTS.set(0)

    def _drain(self, work: WorkQueueClient) -> None:
        deadline = time.monotonic() + self.config.shutdown_grace_seconds
        while any(s.running for s in self.pool.slots) and time.monotonic() < deadline:
            self._tick(work, taking=False)

    def _tick(self, work: WorkQueueClient, taking: bool) -> None:
        self._apply_control()
        taken = self._fill(work) if taking else 0
        if taken:
            self._idle_wait, timeout = 0.0, 0.0  # more may be waiting: ask again at once
        elif taking and any(s.free for s in self.pool.slots):
            # the queues were empty: poll again later, backing off while they stay empty
            self._idle_wait = timeout = min(IDLE_WAIT_MAX, max(0.01, self._idle_wait * 2))
        else:
            timeout = BUSY_WAIT  # all slots busy: wake up for results, cancels and deadlines
        self._collect(timeout)
        self._enforce_deadlines()
        BUSY_SLOTS.set(sum(1 for s in self.pool.slots if s.running))

    # ------------------------------------------------------------------ taking work

    def _fill(self, work: WorkQueueClient) -> int:
        """Claim a message for every free slot, announce them all in one confirmed batch (the
        confirm wait is the cost of a start), acknowledge them, hand them to the children."""
        if time.monotonic() < self._broker_back_at:
            return 0
        free = [slot for slot in self.pool.slots if slot.free]
        claimed: list[tuple[Delivery, dict[str, Any]]] = []
        while len(claimed) < len(free):
            delivery = self._next_delivery(work)
            if delivery is None:
                break
            message = self._accept(work, delivery, [m for _, m in claimed])
            if message is not None:
                claimed.append((delivery, message))
        if not claimed:
            return 0
        now = utcnow()
        try:
            self.publisher.publish_now([self._announcement(message, now) for _, message in claimed])
        except BusUnavailable as exc:
            log.warning("cannot announce %d starts (%r); giving the messages back", len(claimed), exc)
            for delivery, _ in claimed:
                work.reject(delivery, requeue=True)
            self._broker_back_at = time.monotonic() + 1.0
            return 0
        for delivery, _ in claimed:
            work.ack(delivery)
        runnable = [m for _, m in claimed if self.registry.get(m["task_type"]) is not None]
        for slot, message in zip(free, runnable, strict=False):
            self._run(slot, message, now)
        return len(runnable)

    def _next_delivery(self, work: WorkQueueClient) -> Delivery | None:
        for priority in self.rotation.order():
            try:
                delivery = work.get(priority)
            except BusUnavailable as exc:
                log.warning("work queues unreachable (%r)", exc)
                self._broker_back_at = time.monotonic() + 1.0
                return None
            if delivery is not None:
                return delivery
        return None

    def _accept(
        self, work: WorkQueueClient, delivery: Delivery, claimed: list[dict[str, Any]]
    ) -> dict[str, Any] | None:
        """The message, if it is to be started; else it is settled here and None returned."""
        try:
            message = json.loads(delivery.body)
            if not isinstance(message, dict) or any(k not in message for k in MESSAGE_KEYS):
                raise ValueError("missing keys")
        except ValueError:
            log.error("unreadable work message %s: parked in the dead-letter queue", delivery.message_id)
            work.reject(delivery, requeue=False)
            return None
        duplicate = any(
            m["task_id"] == message["task_id"] and m["attempt"] == message["attempt"] for m in claimed
        )
        if duplicate or self._was_stopped(message) or self._runs(message):
            # cancelled or revoked while it waited, or a second delivery of an attempt this
            # worker already runs (its first ack was lost): never start it
            work.ack(delivery)
            return None
        return message

    def _announcement(self, message: dict[str, Any], now: datetime) -> Envelope:
        """task.started, or task.failed at once for a type this worker has no handler for."""
        if self.registry.get(message["task_type"]) is not None:
            return self._event("task.started", message, started_at=iso(now))
        return self._event(
            "task.failed",
            message,
            error_message=f"No handler for task type {message['task_type']!r} on worker "
            f"{self.config.name}: every worker of a queue must register every type sent to it.",
            traceback=None,
            will_retry=False,
            retry_delay_seconds=None,
            metrics=self._metrics(message, now, 0, {}),
        )

    def _run(self, slot: Slot, message: dict[str, Any], now: datetime) -> None:
        spec = self.registry.get(message["task_type"])
        assert spec is not None
        minutes = message.get("timeout_minutes") or spec.timeout_minutes or 60
        running = Running(
            message=message,
            started_at=iso(now) or "",
            started_monotonic=time.monotonic(),
            deadline=time.monotonic() + float(minutes) * 60 * self.config.timeout_scale,
        )
        job = {
            "message": message,
            "worker_name": self.config.name,
            "persistence": {
                "url": self.config.persistence_url,
                "token": self.config.token(message) if spec.persistent else None,
                "retry_seconds": self.config.persistence_retry_seconds,
            },
        }
        try:
            self.pool.submit(slot, job, running)
        except OSError:  # the child died just now: _collect sees it and reports the attempt
            log.warning("child %d gone before %s started", slot.index, message["task_id"])

    # ------------------------------------------------------------------ following children

    def _collect(self, timeout: float) -> None:
        busy = [s for s in self.pool.slots if s.running and s.conn is not None]
        waitables: list[Any] = [s.conn for s in busy]
        waitables += [s.process.sentinel for s in self.pool.slots if s.process is not None]
        ready = set(wait(waitables, timeout)) if waitables else set()
        if not waitables:
            time.sleep(timeout)
        for slot in busy:
            while slot.running is not None and slot.conn is not None and slot.conn in ready:
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
            if slot.process is not None and slot.process.sentinel in ready and not slot.process.is_alive():
                self._on_child_death(slot)

    def _on_progress(self, running: Running, payload: dict[str, Any]) -> None:
        if running.stop_reason is not None:
            return
        running.progress_percentage = int(payload.get("progress_percentage") or 0)
        running.step = payload.get("step")
        event = self._event(
            "task.progress",
            running.message,
            progress_percentage=running.progress_percentage,
            current_step=running.step,
        )
        self.publisher.latest(f"progress:{running.task_id}", event)

    def _on_outcome(self, running: Running, outcome: dict[str, Any]) -> None:
        kind = outcome.get("kind")
        metrics = self._metrics_of(running, outcome.get("metrics") or {})
        if running.stop_reason == "timeout":
            self._report_timeout(running, metrics)
        elif running.stop_reason is not None or kind in ("cancelled", "paused"):
            # cancelled/revoked here, or paused/cancelled by persistence: core already knows (a
            # late result of a cancelled attempt would be ignored anyway)
            ATTEMPTS.labels(kind if running.stop_reason is None else running.stop_reason).inc()
        elif kind == "completed":
            self.processed_tasks += 1
            ATTEMPTS.labels("completed").inc()
            self.publisher.reliable(
                self._event(
                    "task.completed",
                    running.message,
                    result_data=outcome.get("result") or {},
                    metrics=metrics,
                )
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

    def _enforce_deadlines(self) -> None:
        now = time.monotonic()
        for slot in self.pool.slots:
            running = slot.running
            if running is None:
                continue
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

    # ------------------------------------------------------------------ cancellations

    def _on_control(self, delivery: Delivery) -> None:
        """On the subscription's thread: only hand over; the loop owns the slots."""
        self._control.put(Envelope.from_json(delivery.body))

    def _apply_control(self) -> None:
        while True:
            try:
                envelope = self._control.get_nowait()
            except queue.Empty:
                break
            task_id = envelope.data.get("task_id")
            raw_attempt = envelope.data.get("attempt")
            attempt = int(raw_attempt) if raw_attempt is not None else None
            revoke = envelope.event_type == "task.attempt_revoked"
            if revoke and envelope.data.get("worker_name") not in (None, self.config.name):
                continue  # another worker's run of that attempt (a second delivery) is revoked
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

    def _runs(self, message: dict[str, Any]) -> bool:
        return any(
            s.running is not None
            and s.running.task_id == message["task_id"]
            and s.running.attempt == int(message["attempt"])
            for s in self.pool.slots
        )

    def _was_stopped(self, message: dict[str, Any]) -> bool:
        """Was this message's attempt cancelled or revoked while it waited in its queue? (A manual
        retry after a cancel is a newer attempt: it runs.)"""
        record = self._stopped.get(str(message["task_id"]))
        if record is None:
            return False
        attempt, revoke, _ = record
        if attempt is None:
            return True
        return int(message["attempt"]) == attempt if revoke else int(message["attempt"]) <= attempt

    # ------------------------------------------------------------------ events

    def _report_timeout(self, running: Running, metrics: dict[str, Any]) -> None:
        minutes = running.message.get("timeout_minutes") or 60
        self._report_failure(
            running,
            f"Timed out: the attempt ran past timeout_minutes={minutes} and was stopped.",
            None,
            True,
            metrics,
        )

    def _report_failure(
        self, running: Running, error: str, trace: str | None, retryable: bool, metrics: dict[str, Any]
    ) -> None:
        message = running.message
        spec = self.registry.get(message["task_type"])
        retry_count = int(message.get("retry_count") or 0)
        will_retry = bool(spec) and retryable and retry_count < int(message.get("max_retries") or 0)
        delay = round(spec.retry.delay(retry_count), 3) if spec and will_retry else None
        self.failed_tasks += 1
        ATTEMPTS.labels("failed").inc()
        self.publisher.reliable(
            self._event(
                "task.failed",
                message,
                error_message=error,
                traceback=trace,
                will_retry=will_retry,
                retry_delay_seconds=delay,
                metrics=metrics,
            )
        )

    def _event(self, event_type: str, message: dict[str, Any], **data: Any) -> Envelope:
        return Envelope(
            event_type=event_type,
            producer="worker",
            brand_id=message.get("brand_id"),
            correlation_id=f"{message['task_id']}:{message.get('attempt')}",
            data={
                "id": message["id"],
                "task_id": message["task_id"],
                "attempt": message.get("attempt"),
                "worker_name": self.config.name,
                **data,
            },
        )

    def _metrics_of(self, running: Running, reported: dict[str, Any]) -> dict[str, Any]:
        elapsed_ms = int((time.monotonic() - running.started_monotonic) * 1000)
        return self._metrics(running.message, parse_iso(running.started_at), elapsed_ms, reported)

    def _metrics(
        self,
        message: dict[str, Any],
        started_at: datetime | None,
        execution_ms: int,
        reported: dict[str, Any],
    ) -> dict[str, Any]:
        """The attempt's metrics: measured here (time, queue wait) and in the child (memory, CPU,
        the handler's counters)."""
        dispatched = parse_iso(message.get("dispatched_at"))
        wait_ms = int((started_at - dispatched).total_seconds() * 1000) if started_at and dispatched else None
        return {
            "execution_time_ms": execution_ms,
            "memory_usage_mb": reported.get("memory_usage_mb"),
            "cpu_usage_percent": reported.get("cpu_usage_percent"),
            "queue_wait_time_ms": max(0, wait_ms) if wait_ms is not None else None,
            "api_calls_count": reported.get("api_calls_count", 0),
            "tokens_used": reported.get("tokens_used", 0),
            "cost_usd": reported.get("cost_usd", 0.0),
            "task_type": message.get("task_type"),
            "priority": message.get("priority"),
            "retry_count": int(message.get("retry_count") or 0),
            "worker_name": self.config.name,
        }

    def _heartbeat(self) -> Envelope:
        """Built on the publisher's thread from a snapshot of the slots."""
        active = [r for r in (s.running for s in self.pool.slots) if r is not None]
        return Envelope(
            event_type="worker.heartbeat",
            producer="worker",
            brand_id=None,
            data={
                "worker_name": self.config.name,
                "queues": list(self.config.queues),
                "concurrency": self.pool.size,
                "task_types": [spec.describe() for spec in self.registry.specs()],
                "active_task_ids": [r.task_id for r in active],
                "active_tasks": [
                    {
                        "id": r.message["id"],
                        "task_id": r.task_id,
                        "attempt": r.attempt,
                        "brand_id": r.message.get("brand_id"),
                        "task_type": r.message.get("task_type"),
                        "started_at": r.started_at,
                        "timeout_minutes": r.message.get("timeout_minutes"),
                    }
                    for r in active
                ],
                "cpu_percent": psutil.cpu_percent(None),
                "memory_percent": psutil.virtual_memory().percent,
                "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
                "processed_tasks": self.processed_tasks,
                "failed_tasks": self.failed_tasks,
                "started_at": self.started_at,
            },
        )
