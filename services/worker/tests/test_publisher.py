"""The worker's outgoing events while the broker refuses them: results are kept and published
once it is back, in order, each once; progress is coalesced to the newest (no server needed)."""

from __future__ import annotations

import threading

from services.worker.publisher import EventPublisher
from shared.events.bus import BusUnavailable
from shared.events.envelope import Envelope
from shared.events.inprocess_bus import InProcessBus
from shared.testing.fixtures import wait_until


class FlakyBus(InProcessBus):
    """Refuses every publish while `down` is set, as a stopped broker does."""

    def __init__(self) -> None:
        super().__init__(prefix="pub.")
        self.down = threading.Event()
        self.published: list[Envelope] = []

    def publish(self, messages):
        if self.down.is_set():
            raise BusUnavailable("broker down")
        self.published += [Envelope.from_json(m.body) for m in messages]


def event(event_type, n, **data):
    return Envelope(event_type, "worker", 9, {"id": n, "task_id": f"task_{n}", **data})


def heartbeat():
    return Envelope("worker.heartbeat", "worker", None, {"worker_name": "w", "active_task_ids": []})


def test_results_survive_an_outage_and_progress_is_coalesced():
    bus = FlakyBus()
    publisher = EventPublisher(bus, heartbeat, heartbeat_seconds=0.1)
    stop = threading.Event()
    bus.down.set()
    thread = threading.Thread(target=publisher.run, args=(stop,), daemon=True)
    thread.start()
    try:
        results = [event("task.completed", n) for n in range(5)]
        for n, result in enumerate(results):
            for pct in (10, 50, 90):
                publisher.latest(f"progress:{n}", event("task.progress", n, progress_percentage=pct))
            publisher.reliable(result)
        wait_until(lambda: publisher.pending() == 10, message="all kept while the broker is down")
        bus.down.clear()
        wait_until(lambda: publisher.pending() == 0, timeout=10, message="published after the outage")
    finally:
        stop.set()
        thread.join(5)
    completed = [e.event_id for e in bus.published if e.event_type == "task.completed"]
    assert completed == [r.event_id for r in results]  # each once, in order, same event_id
    progress = [e.data["progress_percentage"] for e in bus.published if e.event_type == "task.progress"]
    assert progress == [90] * 5
    assert any(e.event_type == "worker.heartbeat" for e in bus.published)


def test_flush_publishes_what_is_left_at_shutdown():
    bus = FlakyBus()
    publisher = EventPublisher(bus, heartbeat, heartbeat_seconds=60)
    publisher.reliable(event("task.failed", 1, will_retry=False))
    assert publisher.flush(timeout=2) is True
    assert [e.event_type for e in bus.published] == ["task.failed"]
    bus.down.set()
    publisher.reliable(event("task.completed", 2))
    assert publisher.flush(timeout=0.5) is False and publisher.pending() == 1
