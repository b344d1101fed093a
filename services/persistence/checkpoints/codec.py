"""How checkpoint data is stored: the JSON as submitted (key order kept), zlib-compressed once
optimize-storage has compressed it, with a SHA-256 checksum over a canonical serialization (sorted
keys, no spaces, UTF-8) so that the checksum speaks about the data, not about its formatting."""

from __future__ import annotations

import hashlib
import json
import zlib
from typing import Any

from shared.domain_errors import Conflict


class CorruptedCheckpoint(ValueError):
    """The stored bytes do not decode, or do not match the stored checksum."""


def serialize(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def checksum(data: Any) -> str:
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def compress(raw: bytes) -> bytes:
    return zlib.compress(raw, level=9)


def raw_bytes(payload: bytes, is_compressed: bool) -> bytes:
    """The serialized JSON, byte for byte as it was first stored."""
    if not is_compressed:
        return payload
    try:
        return zlib.decompress(payload)
    except zlib.error as error:
        raise CorruptedCheckpoint("stored data does not decompress") from error


def decode(payload: bytes, is_compressed: bool) -> Any:
    try:
        return json.loads(raw_bytes(payload, is_compressed))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CorruptedCheckpoint("stored data is not JSON") from error


def verified(payload: bytes, is_compressed: bool, expected: str) -> Any:
    """The data, or CorruptedCheckpoint if it no longer matches its checksum."""
    data = decode(payload, is_compressed)
    if checksum(data) != expected:
        raise CorruptedCheckpoint("checksum mismatch")
    return data


def corrupted_error(checkpoint_id: int) -> Exception:
    return Conflict(
        "CHECKPOINT_CORRUPTED",
        "This checkpoint's stored data does not match its checksum; choose another checkpoint "
        "(from_checkpoint) or restart the job.",
        checkpoint_id=checkpoint_id,
    )
