"""Issue 13 finding 9: secrets a deployment can get wrong are refused at startup."""

from __future__ import annotations

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from deploy.generate import HERE as DEPLOY
from shared.config import ConfigError, load_settings

GOOD = "x" * 48


def _public_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


@pytest.mark.parametrize(
    "secret",
    ["compose-only-jwt-secret-change-me-0123456789", "dev-only-jwt-secret-change-me-0123456789abcdef"],
)
def test_secrets_shipped_in_the_repository_are_refused_outside_development(secret):
    with pytest.raises(ConfigError, match="shipped"):
        load_settings("core", {"JWT_SECRET": secret})
    assert load_settings("core", {"JWT_SECRET": secret, "TASKHUB_ENV": "development"}).jwt_secret == secret


def test_production_verifies_with_a_public_key_and_checks_issuer_and_audience():
    complete = {
        "TASKHUB_ENV": "production",
        "JWT_PUBLIC_KEY": _public_pem(),
        "JWT_ISSUER": "https://id.example.com/",
        "JWT_AUDIENCE": "taskhub",
    }
    assert load_settings("core", complete).jwt_algorithms == ("RS256",)
    for change in ({"JWT_SECRET": GOOD, "JWT_PUBLIC_KEY": ""}, {"JWT_ISSUER": ""}, {"JWT_AUDIENCE": ""}):
        with pytest.raises(ConfigError, match="production"):
            load_settings("core", {**complete, **change})


def test_a_worker_needs_no_token_secret_and_compose_gives_it_none():
    assert load_settings("worker", {}).jwt_secret is None
    compose = yaml.safe_load((DEPLOY / "compose" / "docker-compose.yml").read_text())
    assert "JWT_SECRET" not in compose["services"]["worker"]["environment"]
    for name, service in compose["services"].items():
        secret = (service.get("environment") or {}).get("JWT_SECRET")
        assert secret is None or secret.startswith("${JWT_SECRET:?"), name  # no public fallback
