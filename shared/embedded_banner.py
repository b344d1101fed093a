"""What `make run` prints first: a development token and a first curl."""

from __future__ import annotations

import os

from .auth import mint_token
from .embedded_secret import dev_secret


def main() -> None:
    port = os.environ.get("PORT", "8080")
    token = mint_token(
        os.environ.get("JWT_SECRET") or dev_secret(),
        brands=[{"id": 9, "name": "Humari", "role": "admin"}],
        username="martin",
    )
    print(
        f"""
taskhub is starting on http://localhost:{port}  (embedded mode: SQLite in ./data, in-process bus)

Development token (brand 9, admin, 12 h):
  export TOKEN={token}

First calls:
  curl -s -X POST localhost:{port}/tasks/ -H "Authorization: Bearer $TOKEN" -H "X-Brand-ID: 9" \\
       -H "Content-Type: application/json" -d '{{"task_type": "example.sleep", "context_data": {{"seconds": 3, "steps": 3}}}}'
  curl -s localhost:{port}/tasks/ -H "Authorization: Bearer $TOKEN" -H "X-Brand-ID: 9"

Console (signs in with this token): http://localhost:{port}/console/#token={token}&brand=9
API docs: http://localhost:{port}/docs/core/
"""
    )


if __name__ == "__main__":
    main()
