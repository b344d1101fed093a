"""Another brand's object is exactly the same 404 as a missing one (docs/service-layout.md)."""

from __future__ import annotations

from typing import Any

Call = tuple[str, str] | tuple[str, str, Any]


def on_item(url: str, *methods: str) -> list[Call]:
    """The calls of an object's own URL: GET, PUT, PATCH and DELETE unless `methods` are named."""
    return [(method, url) for method in methods or ("get", "put", "patch", "delete")]


def assert_not_found_for(client: Any, headers: dict[str, str], calls: list[Call]) -> None:
    """Each call `(method, url)` or `(method, url, body)`, made with `headers` (another brand's),
    answers 404 NOT_FOUND. A PUT or PATCH given no body sends `{}`."""
    for method, url, *body in calls:
        json = body[0] if body else ({} if method in ("put", "patch") else None)
        response = getattr(client, method)(url, json=json, headers=headers)
        assert (response.status_code, response.json["error_code"]) == (404, "NOT_FOUND"), (method, url)
