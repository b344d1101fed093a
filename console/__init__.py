"""The operator console: a small single-page app of static files (console/static/), served by the
gateway under the route table's `/console/` (nginx reads the files; `make run` serves them with
`create_app`). It has no server side of its own: every page calls the public API with the
signed-in user's JWT, so roles and brand scope hold exactly as for any client (docs/console.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask, redirect, send_from_directory

STATIC_DIR = Path(__file__).resolve().parent / "static"

# Sent with every console file, by nginx (gateway.render) and by create_app alike. The token lives
# in sessionStorage, so scripts are what must be trusted: only the console's own, no inline code,
# no framing (clickjacking), and the API called on the same origin only.
HEADERS: dict[str, str] = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # a deploy must reach every browser at once: revalidate each time (ETag / Last-Modified)
    "Cache-Control": "no-cache",
}

# The only file types the console has (nginx's `types` block is rendered from this).
MIME_TYPES: dict[str, str] = {
    "html": "text/html",
    "js": "text/javascript",
    "css": "text/css",
    "svg": "image/svg+xml",
    "png": "image/png",
    "md": "text/plain",
    "txt": "text/plain",
}


def create_app(prefix: str = "/console/") -> Flask:
    """The console's files for `make run` (the gateway serves them itself everywhere else)."""
    from shared.errors import register_error_handlers

    app = Flask("taskhub.console", static_folder=None)
    register_error_handlers(app)
    bare = prefix.rstrip("/")

    @app.get(bare)
    def bare_prefix() -> Any:
        return redirect(prefix, code=301)

    @app.get(prefix, defaults={"name": "index.html"})
    @app.get(f"{prefix}<path:name>")
    def static_file(name: str) -> Any:
        return send_from_directory(STATIC_DIR, name, max_age=0)

    @app.after_request
    def security_headers(response: Any) -> Any:
        for header, value in HEADERS.items():
            response.headers.setdefault(header, value)
        return response

    return app
