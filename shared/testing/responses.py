"""Reading a Flask test response's JSON body in typed tests."""

from __future__ import annotations

from typing import Any

from werkzeug.test import TestResponse


def json_body(response: TestResponse) -> Any:
    """The body's JSON; a response without one fails the test here, showing what came instead
    (Werkzeug's `response.json` is None then, typed as optional for that reason)."""
    body = response.json
    assert body is not None, f"{response.status}: {response.get_data(as_text=True)[:500]}"
    return body
