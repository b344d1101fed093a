"""The development JWT secret of a single machine: generated once into the data folder, so that
`make run` and `make token` agree without anyone choosing a password."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from .config import REPO_ROOT


def dev_secret() -> str:
    folder = Path(os.environ.get("TASKHUB_DATA_DIR", REPO_ROOT / "data"))
    path = folder / "dev-jwt-secret"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()
