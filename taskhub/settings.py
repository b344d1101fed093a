"""Where the client and the command find the platform and who they are, first match wins:
command-line flags, then `TASKHUB_URL` / `TASKHUB_TOKEN` / `TASKHUB_BRAND`, then the config file
(`TASKHUB_CONFIG`, default `~/.config/taskhub/config.toml`, or `$XDG_CONFIG_HOME/taskhub/...`):

    url = "http://localhost:8080"
    token = "eyJ..."
    brand = 9

    [profiles.prod]              # `taskhub --profile prod ...` (or TASKHUB_PROFILE=prod)
    url = "https://tasks.example.com"
    token_file = "~/.secrets/taskhub-prod.jwt"
    brand = 9
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_URL = "http://localhost:8080"


class SettingsError(Exception):
    pass


@dataclass(frozen=True)
class Settings:
    url: str
    token: str | None
    brand: int | None


def config_path() -> Path:
    given = os.environ.get("TASKHUB_CONFIG")
    if given:
        return Path(given).expanduser()
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "taskhub" / "config.toml"


def _file_values(path: Path, profile: str | None) -> dict[str, Any]:
    if not path.exists():
        if profile:
            raise SettingsError(f"profile {profile!r} asked for, but {path} does not exist")
        return {}
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise SettingsError(f"{path}: {error}") from None
    values = {k: v for k, v in raw.items() if k != "profiles"}
    if profile:
        profiles = raw.get("profiles") or {}
        if profile not in profiles:
            raise SettingsError(f"{path} has no [profiles.{profile}]")
        values.update(profiles[profile])
    if "token_file" in values and "token" not in values:
        values["token"] = Path(str(values["token_file"])).expanduser().read_text().strip()
    return values


def resolve(
    url: str | None = None,
    token: str | None = None,
    brand: int | None = None,
    profile: str | None = None,
) -> Settings:
    profile = profile or os.environ.get("TASKHUB_PROFILE") or None
    from_file = _file_values(config_path(), profile)
    env = os.environ
    raw_brand = brand if brand is not None else env.get("TASKHUB_BRAND") or from_file.get("brand")
    try:
        brand_id = None if raw_brand in (None, "") else int(raw_brand)
    except (TypeError, ValueError):
        raise SettingsError(f"the brand must be an integer id, got {raw_brand!r}") from None
    return Settings(
        url=str(url or env.get("TASKHUB_URL") or from_file.get("url") or DEFAULT_URL).rstrip("/"),
        token=token or env.get("TASKHUB_TOKEN") or from_file.get("token") or None,
        brand=brand_id,
    )
