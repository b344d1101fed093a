"""What a test sees of the SQL an engine sends: how many statements, and which (a
`before_cursor_execute` listener). For checks such as "a batch of events is one INSERT" or "an
idle loop sends nothing"."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event


class StatementLog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: list[str] = []

    def _record(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        with self._lock:
            self._seen.append(" ".join(statement.split()))

    @property
    def statements(self) -> list[str]:
        with self._lock:
            return list(self._seen)

    def count(self, fragment: str = "") -> int:
        """Statements containing `fragment` (case-insensitive); all of them by default."""
        return sum(fragment.lower() in s.lower() for s in self.statements)

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()


@contextmanager
def statements_of(engine: Engine) -> Iterator[StatementLog]:
    """Record every statement `engine` sends while inside."""
    log = StatementLog()
    event.listen(engine, "before_cursor_execute", log._record)
    try:
        yield log
    finally:
        event.remove(engine, "before_cursor_execute", log._record)
