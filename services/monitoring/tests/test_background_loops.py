"""monitoring's background loops are idle when nothing happens: the worker watch sleeps until a
worker could be late or a worker that was not online speaks, the notifier until a notification is
queued or a retry is due. Neither queries the database meanwhile (statements counted), and each
still acts on time."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from services.monitoring.app import create_app
from services.monitoring.container import MonitoringContainer, bootstrap
from shared.events.envelope import utcnow
from shared.events.inprocess_bus import InProcessBus
from shared.testing.fixtures import make_settings, wait_until

from .conftest import Feed, allow_test_receivers
from .receivers import webhook_receiver
from .test_event_batches import statements
from .test_workers import beat

# Long enough for the loops this replaced to have queried several times (the worker watch every
# third of the allowance, the notifier every 0.5 s): the quiet is observed over this window.
QUIET_WINDOW = 1.5


@pytest.fixture
def quiet(database_url: str) -> Iterator[MonitoringContainer]:
    built = bootstrap(
        make_settings("monitoring", database_url, TASKHUB_WORKER_OFFLINE_SECONDS="1"),
        bus=InProcessBus(prefix="t."),
    )
    allow_test_receivers(built)
    create_app(container=built)  # migrates
    yield built
    built.ctx.dispose()


class Passes:
    """Counts the calls of a loop's pass (the loop calls it through the instance)."""

    def __init__(self, owner: Any, name: str) -> None:
        self.count = 0
        wrapped: Callable[[], Any] = getattr(owner, name)

        def counted() -> Any:
            result = wrapped()
            self.count += 1
            return result

        setattr(owner, name, counted)


def running(loop: Callable[[threading.Event], None]) -> tuple[threading.Thread, threading.Event]:
    stop = threading.Event()
    thread = threading.Thread(target=loop, args=(stop,), daemon=True)
    thread.start()
    return thread, stop


def assert_quiet(container: MonitoringContainer, passes: Passes) -> None:
    before = passes.count
    with statements(container.ctx.engine) as seen:
        time.sleep(QUIET_WINDOW)
    assert seen == [] and passes.count == before


def test_the_worker_watch_sleeps_until_a_worker_could_be_late(quiet):
    feed = Feed(quiet)
    passes = Passes(quiet.worker_watch, "sweep")
    thread, stop = running(quiet.worker_watch.loop().run)
    try:
        wait_until(lambda: passes.count == 1, timeout=5, message="the first pass")
        assert_quiet(quiet, passes)  # no worker online: nothing can become late

        feed.apply(beat("w-new"), None)  # a new worker: the consumer's commit wakes the watch
        wait_until(lambda: passes.count == 2, timeout=5, message="woken by the new worker")
        # it knows when w-new could be late (1 s after its heartbeat) and looks only then
        [offline] = wait_until(lambda: feed.published("worker.offline"), timeout=5, message="w-new offline")
        assert offline["data"]["worker_name"] == "w-new"
        assert passes.count == 3
        assert_quiet(quiet, passes)  # nobody online again
    finally:
        stop.set()
        thread.join(5)


def test_only_a_worker_that_was_not_online_wakes_the_watch(quiet):
    feed, wakeup = Feed(quiet), quiet.worker_watch.wakeup
    feed.apply(beat("w1"), None)
    assert wakeup.wait(0), "a new worker"
    feed.apply(beat("w1"), None)
    assert not wakeup.wait(0), "an online worker's deadline only moves later"
    feed.apply_batch([feed.envelope(beat("w2"), None), feed.envelope(beat("w1"), None)])
    assert wakeup.wait(0), "a batch with a new worker"
    feed.apply(beat("w3"), None, at=utcnow() - timedelta(seconds=5))
    wakeup.wait(0)
    assert quiet.worker_watch.sweep().marked_offline == 1  # w3 was silent
    feed.apply(beat("w3"), None)
    assert wakeup.wait(0), "a worker back from silence"


def test_the_notifier_sleeps_until_a_notification_is_queued_or_due(quiet, auth):
    feed, client = Feed(quiet), create_app(container=quiet).test_client()
    quiet.notifier.backoff = lambda attempts: timedelta(seconds=1)
    passes = Passes(quiet.notifier, "next_due")  # the last step of a pass
    thread, stop = running(quiet.notifier.loop().run)
    with webhook_receiver(fail_first=1) as hook:
        try:
            wait_until(lambda: passes.count == 1, timeout=5, message="the first pass")
            assert_quiet(quiet, passes)  # nothing pending

            rule: dict[str, Any] = {"name": "slow", "metric_field": "execution_time_ms", "condition": "gt"}
            rule.update(threshold_value=1000, webhook_url=hook.url)
            assert (
                client.post("/tasks/monitoring/alerts/", json=rule, headers=auth.headers()).status_code == 201
            )
            feed.run(execution_time_ms=5000.0)  # queues a notification: its commit wakes the notifier
            wait_until(lambda: len(hook.calls) == 1, timeout=5, message="the first try")
            # the receiver answered 500: the send's end wakes the notifier, which finds the retry
            # due in 1 s, sleeps until then and sends; that send's end wakes it once more
            wait_until(lambda: len(hook.calls) == 2, timeout=5, message="the retry")
            wait_until(lambda: passes.count == 5, timeout=5, message="the retry's outcome")
            assert_quiet(quiet, passes)  # sent: nothing pending, and no pass besides those five
        finally:
            stop.set()
            thread.join(5)
