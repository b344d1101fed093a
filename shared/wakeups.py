"""Wake-ups instead of polling: a background loop sleeps until something it cares about changed
(or until the next thing it knows is due), never on a timer that queries a database or the broker.

A service process has named signals ("outbox", "due", "leases", ...). A commit that changes what
a loop waits for names that signal in its unit of work (`uow.wake(name)`): in the same process
the signal is set after the commit; on PostgreSQL the transaction also sends
`NOTIFY taskhub_<name>`, delivered at commit to every process of the service (web and background
are separate processes), where one listener thread per process sets the same signal. Inserting
an outbox row notifies `taskhub_outbox` by itself (a statement trigger: no extra round trip).

A signal set while nobody waits is remembered until the next wait, so a wake-up is never lost
between a loop's pass and its next sleep. A listener that lost its connection sets every signal
once it is back: what was notified meanwhile is caught up by one pass of each loop.
"""

from __future__ import annotations

import logging
import select
import threading
from collections.abc import Iterable
from threading import Event as StopSignal
from typing import TYPE_CHECKING

import psycopg
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

if TYPE_CHECKING:
    from .background import Loop

log = logging.getLogger(__name__)

CHANNEL_PREFIX = "taskhub_"
# How often a waiting loop looks at its stop signal (a select on a socket, no query).
STOP_CHECK_SECONDS = 1.0


def channel(name: str) -> str:
    return CHANNEL_PREFIX + name


class Signal:
    """A wake-up: `set()` from anywhere, `wait(timeout)` in one loop; True if it was set."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def wait(self, timeout: float | None) -> bool:
        woken = self._event.wait(timeout)
        self._event.clear()
        return woken


class Wakeups:
    """The named signals of one process, and (on PostgreSQL) the listener that feeds them."""

    def __init__(self, engine: Engine | None = None) -> None:
        self._signals: dict[str, Signal] = {}
        self._lock = threading.Lock()
        self._engine = engine if engine is not None and engine.dialect.name == "postgresql" else None

    def signal(self, name: str) -> Signal:
        with self._lock:
            return self._signals.setdefault(name, Signal())

    def set(self, names: Iterable[str]) -> None:
        for name in names:
            self.signal(name).set()

    def listener(self) -> Loop | None:
        """The loop that turns NOTIFYs into signals (None without PostgreSQL: one process only)."""
        if self._engine is None:
            return None
        from .background import Loop

        return Loop("wakeups.listener", self._listen)

    def _listen(self, stop: StopSignal) -> None:
        url = make_url(self._engine.url).set(drivername="postgresql")  # type: ignore[union-attr]
        dsn = url.render_as_string(hide_password=False)
        while not stop.is_set():
            try:
                with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
                    for name in list(self._signals):
                        conn.execute(f'LISTEN "{channel(name)}"')
                    listening = set(self._signals)
                    # anything notified while we were not listening: one pass of every loop
                    self.set(self._signals)
                    while not stop.is_set():
                        self._deliver(conn)
                        for name in set(self._signals) - listening:
                            conn.execute(f'LISTEN "{channel(name)}"')
                            listening.add(name)
            except psycopg.Error as exc:
                log.warning("wake-up listener lost its database (%r); reconnecting", exc)
                stop.wait(2.0)

    def _deliver(self, conn: psycopg.Connection) -> None:
        readable, _, _ = select.select([conn.fileno()], [], [], STOP_CHECK_SECONDS)
        if not readable:
            return
        names = {n.channel.removeprefix(CHANNEL_PREFIX) for n in conn.notifies(timeout=0)}
        self.set(names)
