"""Development tokens (HS256, a shared secret), the same claims the platform reads (docs/api.md §0).
Production deployments verify tokens from an identity provider and never mint them."""

from __future__ import annotations

import os
import time
from pathlib import Path

import jwt

ROLES = ("viewer", "operator", "admin")


def dev_secret(secret: str | None = None, data_dir: str | None = None) -> str:
    """The secret `make run` generated (`data/dev-jwt-secret`), unless one is given or in
    `JWT_SECRET`."""
    if secret:
        return secret
    if os.environ.get("JWT_SECRET"):
        return os.environ["JWT_SECRET"]
    path = Path(data_dir or os.environ.get("TASKHUB_DATA_DIR") or "data") / "dev-jwt-secret"
    if not path.exists():
        raise FileNotFoundError(
            f"no JWT secret: set JWT_SECRET, pass --secret, or run where `make run` keeps {path}"
        )
    return path.read_text().strip()


def mint(
    secret: str,
    brands: list[int],
    *,
    role: str = "admin",
    brand_name: str = "Humari",
    username: str = "martin",
    sub: str = "1",
    hours: float = 12,
) -> str:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    now = int(time.time())
    payload = {
        "sub": sub,
        "username": username,
        "brands": [{"id": b, "name": brand_name, "role": role} for b in brands],
        "iat": now,
        "exp": now + int(hours * 3600),
    }
    return jwt.encode(payload, secret, algorithm="HS256")
