"""Configuration from environment variables, read once per process, failing fast and clearly.

The variables every deployment shares are listed in the README ("Configuration") and
docs/deploy.md §8. Anything a service needs beyond them has a default that works on one machine.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")
PUBLIC_KEY_ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512")


class ConfigError(RuntimeError):
    """A required variable is missing or malformed. The message names it."""


@dataclass(frozen=True)
class Settings:
    service: str
    database_url: str
    amqp_url: str | None  # None: the in-process bus (embedded mode only)
    jwt_secret: str | None
    jwt_public_key: str | None
    jwt_algorithms: tuple[str, ...]
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_max_lifetime_seconds: int = 24 * 3600
    bus_prefix: str = "taskhub."
    max_body_bytes: int = 1024 * 1024
    log_level: str = "INFO"
    log_json: bool = True
    extra: Mapping[str, Any] = field(default_factory=dict)

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    def get(self, key: str, default: Any = None) -> Any:
        return self.extra.get(key, default)


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None


def _algorithms(env: Mapping[str, str], has_public_key: bool) -> tuple[str, ...]:
    raw = env.get("JWT_ALGORITHMS")
    default = ("RS256",) if has_public_key else ("HS256",)
    algorithms = tuple(a.strip() for a in raw.split(",") if a.strip()) if raw else default
    allowed = PUBLIC_KEY_ALGORITHMS if has_public_key else HMAC_ALGORITHMS
    bad = [a for a in algorithms if a not in allowed]
    if bad or not algorithms:
        kind = "JWT_PUBLIC_KEY" if has_public_key else "JWT_SECRET"
        raise ConfigError(f"JWT_ALGORITHMS {bad or raw!r} cannot be used with {kind}; allowed: {allowed}")
    return algorithms


def default_database_url(service: str, data_dir: Path | None = None) -> str:
    folder = data_dir or Path(os.environ.get("TASKHUB_DATA_DIR", REPO_ROOT / "data"))
    return f"sqlite:///{folder / f'{service}.db'}"


def database_url_of(service: str, env: Mapping[str, str] | None = None) -> str:
    """The service's own database: `<SERVICE>_DATABASE_URL`, else its SQLite file in data/."""
    env = os.environ if env is None else env
    return env.get(f"{service.upper()}_DATABASE_URL") or default_database_url(service)


# processes that verify no token (a worker acts only with the credentials its messages carry)
TOKENLESS = frozenset({"worker"})
# secrets this repository ships for development: anyone can read them, so only TASKHUB_ENV=development
# accepts them (make run generates its own)
SHIPPED_SECRETS = ("change-me", "changeme", "dev-only", "compose-only", "example-secret")


def _check_secrets(env: Mapping[str, str], secret: str | None, public_key: str | None) -> None:
    stage = env.get("TASKHUB_ENV", "")
    if secret and len(secret) < 32:
        raise ConfigError("JWT_SECRET must be at least 32 characters (RFC 8725 §3.5)")
    if secret and stage != "development" and any(word in secret.lower() for word in SHIPPED_SECRETS):
        raise ConfigError(
            "JWT_SECRET is a development value shipped with the repository; generate one "
            "(python -c 'import secrets; print(secrets.token_urlsafe(48))') or set TASKHUB_ENV=development"
        )
    if stage == "production":
        missing = [name for name in ("JWT_ISSUER", "JWT_AUDIENCE") if not env.get(name)]
        if secret or not public_key or missing:
            raise ConfigError(
                "TASKHUB_ENV=production verifies user tokens with a public key and checks their "
                "issuer and audience: set JWT_PUBLIC_KEY, JWT_ISSUER and JWT_AUDIENCE, and no "
                f"JWT_SECRET (missing: {', '.join(missing) or 'none'})"
            )


def load_settings(service: str, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Read the process environment (or `env`) into Settings; raise ConfigError on bad input."""
    env = os.environ if env is None else env
    secret = env.get("JWT_SECRET") or None
    public_key = env.get("JWT_PUBLIC_KEY") or None
    if public_key and public_key.startswith("@"):
        public_key = Path(public_key[1:]).read_text()
    if not secret and not public_key and service not in TOKENLESS:
        raise ConfigError("JWT_SECRET (HS256) or JWT_PUBLIC_KEY (RS256/ES256) must be set")
    _check_secrets(env, secret, public_key)
    settings = Settings(
        service=service,
        database_url=database_url_of(service, env),
        amqp_url=env.get("AMQP_URL") or None,
        jwt_secret=None if public_key else secret,
        jwt_public_key=public_key,
        jwt_algorithms=_algorithms(env, bool(public_key)),
        jwt_issuer=env.get("JWT_ISSUER") or None,
        jwt_audience=env.get("JWT_AUDIENCE") or None,
        jwt_max_lifetime_seconds=_int(env, "JWT_MAX_LIFETIME_SECONDS", 24 * 3600),
        bus_prefix=env.get("AMQP_PREFIX", "taskhub."),
        max_body_bytes=_int(env, "MAX_BODY_BYTES", 1024 * 1024),
        log_level=env.get("LOG_LEVEL", "INFO").upper(),
        log_json=env.get("LOG_FORMAT", "json") == "json",
        extra={k: v for k, v in env.items() if k.startswith("TASKHUB_")},
    )
    return settings.with_overrides(**overrides) if overrides else settings


def env_int(settings: Settings, name: str, default: int) -> int:
    """A service-specific integer setting (`TASKHUB_*`), validated like the shared ones."""
    return _int(settings.extra, name, default)


def env_float(settings: Settings, name: str, default: float) -> float:
    raw = settings.extra.get(name)
    if raw in (None, ""):
        return default
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None


def env_bool(settings: Settings, name: str, default: bool) -> bool:
    raw = settings.extra.get(name)
    if raw in (None, ""):
        return default
    if str(raw).lower() in ("1", "true", "yes", "on"):
        return True
    if str(raw).lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")
