"""What wakes a stream: `wait_for_change(seen, timeout)` returns as soon as core's tasks may have
changed since the generation `seen`, or when `timeout` passes. Streams never read the database
on a timer while nothing changes; they read when woken (and at their keep-alive).

Wake-ups come from every commit of this process's core sessions (in `make run` that is every
change), and from PostgreSQL's LISTEN/NOTIFY for commits of core's other processes (one listening
connection per process, whatever the number of streams): every change of a task is announced by
its event in core's outbox, whose insert notifies. The process listens only while it serves a
stream (and IDLE_GRACE_S after the last one closed): every task costs a few outbox inserts, and a
web process that woke for each of them with no stream open spent CPU on every task for nobody.
`poll_seconds` > 0 adds a bounded re-read on a timer (off by default; docs/console.md, "Live
updates")."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from shared.unit_of_work import OUTBOX_SIGNAL
from shared.wakeups import channel

log = logging.getLogger(__name__)

# Every commit that changes a task writes its event to core's outbox, and the outbox's trigger
# notifies this channel (shared/wakeups.py): the streams hear what the relay hears.
CHANNEL = channel(OUTBOX_SIGNAL)
RECONNECT_S = (0.5, 1.0, 2.0, 5.0)
# how long the listening connection stays after the last stream closed (a console reconnecting
# its stream does not cost a new connection)
IDLE_GRACE_S = 30.0


class TaskChanges:
    def __init__(self, poll_seconds: float = 0.0) -> None:
        self._condition = threading.Condition()
        self._generation = 0
        self.poll_seconds = poll_seconds
        self._listener: threading.Thread | None = None
        self._stop = threading.Event()
        self._followers = 0
        self._last_follower_left = 0.0
        self._wanted = threading.Event()  # set while some stream follows the changes
        self.listening = False

    @property
    def generation(self) -> int:
        with self._condition:
            return self._generation

    def notify(self) -> None:
        with self._condition:
            self._generation += 1
            self._condition.notify_all()

    def wait_for_change(self, seen: int, timeout: float) -> int:
        """The generation after waiting: != `seen` when something changed."""
        if self.poll_seconds > 0:
            timeout = min(timeout, self.poll_seconds)
        deadline = time.monotonic() + timeout
        with self._condition:
            while self._generation == seen:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._condition.wait(left)
            return self._generation

    @contextmanager
    def followed(self) -> Iterator[None]:
        """While inside, a stream follows the changes: the process listens for other processes'
        commits."""
        with self._condition:
            self._followers += 1
            self._wanted.set()
        try:
            yield
        finally:
            with self._condition:
                self._followers -= 1
                if self._followers == 0:
                    self._last_follower_left = time.monotonic()

    def _still_wanted(self) -> bool:
        with self._condition:
            if self._followers > 0:
                return True
            if time.monotonic() - self._last_follower_left < IDLE_GRACE_S:
                return True
            self._wanted.clear()
            return False

    def follow_commits(self, session_factory: sessionmaker[Session]) -> None:
        """Wake the streams at each commit of a session of this process (a spurious wake-up
        costs one read; a missed one would cost a poll interval)."""
        event.listen(session_factory, "after_commit", lambda _session: self.notify())

    def listen(self, engine: Engine, channel: str = CHANNEL) -> None:
        """Start the process's listener thread (PostgreSQL only; idempotent)."""
        if engine.dialect.name != "postgresql" or self._listener is not None:
            return
        url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        event.listen(engine, "engine_disposed", lambda _engine: self.stop())
        self._listener = threading.Thread(
            target=self._listen_forever, args=(url, channel), name="core.streams.listen", daemon=True
        )
        self._listener.start()

    def stop(self) -> None:
        self._stop.set()

    def _listen_forever(self, url: str, channel: str) -> None:
        import psycopg

        failures = 0
        while not self._stop.is_set():
            if not self._wanted.wait(timeout=1.0):  # no stream: no connection, nothing to hear
                continue
            try:
                with psycopg.connect(url, autocommit=True) as connection:
                    connection.execute(f'LISTEN "{channel}"')
                    self.listening, failures = True, 0
                    # whatever was missed while not listening: every stream re-reads once
                    self.notify()
                    while not self._stop.is_set() and self._still_wanted():
                        # the timeout only lets the thread see `stop`; no query is made
                        for _ in connection.notifies(timeout=1.0):
                            self.notify()
            except Exception as error:  # the database restarting: listen again
                log.warning("stream listener lost its connection (%s); reconnecting", error)
                self._stop.wait(RECONNECT_S[min(failures, len(RECONNECT_S) - 1)])
                failures += 1
            finally:
                self.listening = False


class StreamSlots:
    """At most `limit` open streams in this process: each holds a gunicorn thread while open."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._semaphore = threading.BoundedSemaphore(limit)

    def try_take(self) -> bool:
        return self._semaphore.acquire(blocking=False)

    def give_back(self) -> None:
        self._semaphore.release()
