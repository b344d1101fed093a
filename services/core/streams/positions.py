"""A stream position is the `(updated_at, id)` of the last task change sent, written as the SSE
`id:` (`<microseconds since the epoch>-<task id>`), so that a client's `Last-Event-ID` resumes it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shared.domain_errors import InvalidField

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FORMAT = re.compile(r"(\d{1,19})-(\d{1,19})")


@dataclass(frozen=True, order=True)
class Position:
    updated_at: datetime
    task_pk: int

    def encode(self) -> str:
        micros = (self.updated_at - _EPOCH) // timedelta(microseconds=1)
        return f"{micros}-{self.task_pk}"

    @classmethod
    def decode(cls, text: str) -> Position:
        match = _FORMAT.fullmatch(text.strip())
        if not match:
            raise InvalidField(
                "Last-Event-ID",
                "Expected <microseconds>-<task id>, as sent in `id:`.",
                detail="Last-Event-ID is not a position this stream gave.",
            )
        micros, task_pk = (int(group) for group in match.groups())
        return cls(_EPOCH + timedelta(microseconds=micros), task_pk)

    @classmethod
    def of(cls, task: object) -> Position:
        updated_at: datetime = task.updated_at  # type: ignore[attr-defined]
        if updated_at.tzinfo is None:  # SQLite hands back naive UTC
            updated_at = updated_at.replace(tzinfo=UTC)
        return cls(updated_at, int(task.id))  # type: ignore[attr-defined]
