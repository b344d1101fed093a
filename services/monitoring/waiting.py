"""How monitoring's background loops sleep: until woken (a commit named their signal), until the
next thing they know is due, or until the process stops, with no query meanwhile."""

from __future__ import annotations

import time
from threading import Event as StopSignal

from shared.wakeups import STOP_CHECK_SECONDS, Signal


def sleep_until_woken(wakeup: Signal, stop: StopSignal, seconds: float | None) -> None:
    """Return when `wakeup` is set, after `seconds` (None: no deadline), or when `stop` is set,
    whichever comes first (`stop` is looked at every STOP_CHECK_SECONDS)."""
    deadline = None if seconds is None else time.monotonic() + seconds
    while not stop.is_set():
        left = (
            STOP_CHECK_SECONDS if deadline is None else min(STOP_CHECK_SECONDS, deadline - time.monotonic())
        )
        if left <= 0 or wakeup.wait(left):
            return
