"""The event envelope of docs/events.md, the one shape every event on the bus has."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, overload

import msgspec

if TYPE_CHECKING:
    from .catalog import Event

EVENT_VERSION = 1


def utcnow() -> datetime:
    return datetime.now(UTC)


@overload
def iso(moment: datetime) -> str: ...
@overload
def iso(moment: None) -> None: ...
def iso(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC with a Z, the only timestamp format on the wire."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass(frozen=True)
class Envelope:
    event_type: str
    producer: str
    brand_id: int | None
    data: dict[str, Any]
    correlation_id: str | None = None
    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    event_version: int = EVENT_VERSION
    occurred_at: str = field(default_factory=lambda: iso(utcnow()) or "")

    @classmethod
    def of(cls, event: Event, brand_id: int | None, correlation_id: str | None = None) -> Envelope:
        """The envelope of a typed event (shared/events/catalog.py), sent by its producer."""
        data = msgspec.to_builtins(event)
        return cls(event.event_type, event.producer, brand_id, data, correlation_id)

    def to_json(self) -> bytes:
        # a shallow dict: asdict() deep-copies `data`, which costs more than the encoding itself
        fields = {f.name: getattr(self, f.name) for f in dataclass_fields(self)}
        return msgspec.json.encode(fields, enc_hook=str)

    @classmethod
    def from_json(cls, body: bytes | str) -> Envelope:
        raw = msgspec.json.decode(body)
        return cls(
            event_type=raw["event_type"],
            producer=raw["producer"],
            brand_id=raw.get("brand_id"),
            data=raw.get("data") or {},
            correlation_id=raw.get("correlation_id"),
            event_id=raw["event_id"],
            event_version=raw.get("event_version", EVENT_VERSION),
            occurred_at=raw.get("occurred_at", ""),
        )
