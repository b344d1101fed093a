"""`?persistent_job=3,4` -> [3, 4]: a comma list of integer ids for list filters."""

from __future__ import annotations

from typing import Any

import marshmallow as ma

from shared.listing import CommaList


class IdList(ma.fields.Field[list[int]]):
    # the comma list's own parsing and errors, then ids (a field of its own: its values are ints)
    comma_list = CommaList()

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> list[int]:
        items: list[str] = self.comma_list.deserialize(value, attr, data, **kwargs)
        if not all(item.isascii() and item.isdigit() for item in items):
            raise ma.ValidationError("Give integer ids, separated by commas.")
        return [int(item) for item in items]
