"""Issue 13 finding 8: a production deployment verifies with public keys only. Users' tokens are
the identity provider's (ES256 here), each machine issuer signs with a private key only it holds,
and the services that verify get the public halves: no pod but the issuer can mint."""

from __future__ import annotations

import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from services.persistence.app import create_app
from services.persistence.container import bootstrap
from shared.config import ConfigError, load_settings
from shared.events.inprocess_bus import InProcessBus
from shared.machine_identity import ATTEMPT, CORE, machine_issuer
from shared.testing.fixtures import JWT_SECRET


def _pair() -> tuple[ec.EllipticCurvePrivateKey, str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return key, private, public


@pytest.fixture
def deployment(tmp_path):
    idp, _, idp_public = _pair()
    _, core_private, core_public = _pair()
    shared = {
        "TASKHUB_ENV": "production",
        "JWT_PUBLIC_KEY": idp_public,
        "JWT_ALGORITHMS": "ES256",
        "JWT_ISSUER": "https://id.example.com/",
        "JWT_AUDIENCE": "taskhub",
    }
    persistence = bootstrap(
        load_settings(
            "persistence",
            {
                **shared,
                "TASKHUB_CORE_PUBLIC_KEY": core_public,
                "PERSISTENCE_DATABASE_URL": f"sqlite:///{tmp_path}/p.db",
            },
        ),
        bus=InProcessBus(prefix="t."),
    )
    from shared.migrations import upgrade

    upgrade("persistence", persistence.ctx.engine)
    core = load_settings("core", {**shared, "TASKHUB_MACHINE_SIGNING_KEY": core_private})
    yield {"idp": idp, "client": create_app(container=persistence).test_client(), "core": core}
    persistence.ctx.dispose()


def _user(idp, **claims):
    now = int(time.time())
    payload = {
        "sub": "1",
        "iss": "https://id.example.com/",
        "aud": "taskhub",
        "iat": now,
        "exp": now + 600,
        "brands": [{"id": 9, "name": "H", "role": "viewer"}],
        **claims,
    }
    return jwt.encode(payload, idp, algorithm="ES256")


def test_users_tokens_verify_with_the_identity_providers_public_key(deployment):
    client = deployment["client"]
    ok = client.get(
        "/tasks/persistent-jobs/persistent-jobs/",
        headers={"Authorization": f"Bearer {_user(deployment['idp'])}", "X-Brand-ID": "9"},
    )
    assert ok.status_code == 200
    for bad in (
        _user(deployment["idp"], aud="another-api"),
        _user(deployment["idp"], iss="https://evil.example"),
    ):
        refused = client.get(
            "/tasks/persistent-jobs/persistent-jobs/",
            headers={"Authorization": f"Bearer {bad}", "X-Brand-ID": "9"},
        )
        assert refused.status_code == 401
    hs = jwt.encode({"sub": "1", "exp": int(time.time()) + 60, "brands": []}, JWT_SECRET, algorithm="HS256")
    assert (
        client.get(
            "/tasks/persistent-jobs/persistent-jobs/",
            headers={"Authorization": f"Bearer {hs}", "X-Brand-ID": "9"},
        ).status_code
        == 401
    )


def test_only_cores_private_key_mints_attempt_grants_persistence_accepts(deployment):
    client = deployment["client"]
    body = {"base_task": 5, "task_id": "task_5", "task_type": "example.batch", "attempt": 1}
    issuer = machine_issuer(deployment["core"], CORE)
    assert issuer is not None and issuer.algorithm == "ES256"
    grant = issuer.mint(ATTEMPT, 9, "machine:worker", 600, task=5, attempt=1)
    accepted = client.post(
        "/tasks/persistent-jobs/persistent-jobs/for-task/",
        json=body,
        headers={"Authorization": f"Bearer {grant}", "X-Brand-ID": "9"},
    )
    assert accepted.status_code == 200, accepted.json
    # another key (a pod that is not core) mints nothing persistence believes
    _, other_private, _ = _pair()
    forger = machine_issuer(
        load_settings("core", {"JWT_SECRET": JWT_SECRET, "TASKHUB_MACHINE_SIGNING_KEY": other_private}), CORE
    )
    assert forger is not None
    forged = forger.mint(ATTEMPT, 9, "machine:worker", 600, task=6, attempt=1)
    refused = client.post(
        "/tasks/persistent-jobs/persistent-jobs/for-task/",
        json={**body, "base_task": 6},
        headers={"Authorization": f"Bearer {forged}", "X-Brand-ID": "9"},
    )
    assert refused.status_code == 401
    # and a verifying service holds no signing key at all
    assert machine_issuer(load_settings("persistence", {"JWT_PUBLIC_KEY": _pair()[2]}), CORE) is None


def test_a_signing_key_that_is_not_a_pem_private_key_stops_the_start():
    with pytest.raises(ConfigError, match="TASKHUB_MACHINE_SIGNING_KEY"):
        machine_issuer(
            load_settings("core", {"JWT_SECRET": JWT_SECRET, "TASKHUB_MACHINE_SIGNING_KEY": "nope"}), CORE
        )
