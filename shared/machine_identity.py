"""Machine identities: narrow, short-lived tokens that platform processes give each other.

Users' tokens come from the identity provider (docs/api.md §0). Platform processes never get a user
token and never a token that is good for everything: each machine token is minted by the one
service that knows the facts it vouches for, for one audience and one scope (docs/security.md,
"Who mints what"):

| issuer | minted where | scope | audience | vouches for |
|---|---|---|---|---|
| core | `dispatch()`, in every work message | `attempt` | persistence | brand, task, attempt |
| scheduling | the scheduler, per cancel request | `cancel-run` | core | brand, task of one of its runs |
| scheduling | run-now calls to core | `schedule-run` | core | brand, the run's key and origin |

Keys: in production each issuer holds its own private key (`TASKHUB_MACHINE_SIGNING_KEY`, PEM,
ES256 or RS256), and the services that verify hold only the public keys
(`TASKHUB_CORE_PUBLIC_KEY`, `TASKHUB_SCHEDULING_PUBLIC_KEY`). A worker holds no key at all. In
HS256 deployments (development, `make run`, the tests), each issuer's key is derived from
`JWT_SECRET` (a different key per issuer, never the users' key), so nothing else is configured.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

from .config import ConfigError, Settings

CORE, SCHEDULING = "core", "scheduling"
ATTEMPT, CANCEL_RUN, SCHEDULE_RUN = "attempt", "cancel-run", "schedule-run"


@dataclass(frozen=True)
class IssuerRule:
    audience: str
    scopes: frozenset[str]
    max_lifetime_seconds: int


# what each issuer may grant: a key that leaks can mint nothing outside its own line
ISSUERS: Mapping[str, IssuerRule] = {
    # an attempt may wait in a queue and then run up to the longest timeout (10080 min)
    CORE: IssuerRule("persistence", frozenset({ATTEMPT}), 8 * 24 * 3600),
    SCHEDULING: IssuerRule("core", frozenset({CANCEL_RUN, SCHEDULE_RUN}), 600),
}
ISSUER_PREFIX = "taskhub:"
KEY_VARIABLES = {CORE: "TASKHUB_CORE_PUBLIC_KEY", SCHEDULING: "TASKHUB_SCHEDULING_PUBLIC_KEY"}
LEEWAY_SECONDS = 30


class MachineTokenError(Exception):
    """Not a valid machine token for this service."""


@dataclass(frozen=True)
class MachineGrant:
    """What a verified machine token allows: one scope, in one brand, on the objects it names."""

    issuer: str
    scope: str
    subject: str
    brand_id: int
    claims: Mapping[str, Any] = field(default_factory=dict)

    def claim_int(self, name: str) -> int | None:
        value = self.claims.get(name)
        return value if type(value) is int else None


def _read_key(raw: str) -> str:
    return Path(raw[1:]).read_text() if raw.startswith("@") else raw


def _derived(secret: str, issuer: str) -> str:
    # one HMAC key per issuer: a machine token never verifies as a user token, nor as another
    # issuer's token
    return hmac.new(secret.encode(), f"taskhub machine tokens/{issuer}".encode(), hashlib.sha256).hexdigest()


def _algorithm_of(key: Any) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return "ES256"
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return "RS256"
    raise ConfigError("machine keys must be EC (ES256) or RSA (RS256) PEM keys")


@dataclass(frozen=True)
class MachineIssuer:
    """Mints the tokens of one issuer (only the process that is that issuer builds one)."""

    name: str
    key: Any
    algorithm: str

    def mint(self, scope: str, brand_id: int, subject: str, ttl_seconds: int, **claims: Any) -> str:
        rule = ISSUERS[self.name]
        if scope not in rule.scopes:
            raise ValueError(f"{self.name} cannot grant {scope}")
        now = int(time.time())
        payload = {
            "iss": ISSUER_PREFIX + self.name,
            "aud": ISSUER_PREFIX + rule.audience,
            "sub": subject,
            "scope": scope,
            "brand_id": brand_id,
            "iat": now,
            "exp": now + min(ttl_seconds, rule.max_lifetime_seconds),
            **claims,
        }
        return jwt.encode(payload, self.key, algorithm=self.algorithm)


def machine_issuer(settings: Settings, name: str) -> MachineIssuer | None:
    """This process's issuer: its private key, or a key derived from JWT_SECRET; None when it
    has neither (then it cannot mint, and says so where it would)."""
    raw = settings.get("TASKHUB_MACHINE_SIGNING_KEY")
    if raw:
        try:
            key = load_pem_private_key(_read_key(str(raw)).encode(), password=None)
        except (ValueError, TypeError) as error:
            raise ConfigError(f"TASKHUB_MACHINE_SIGNING_KEY is not a PEM private key: {error}") from None
        return MachineIssuer(name, key, _algorithm_of(key))
    if settings.jwt_secret:
        return MachineIssuer(name, _derived(settings.jwt_secret, name), "HS256")
    return None


class MachineVerifier:
    """Verifies the machine tokens addressed to one service (its audience)."""

    def __init__(self, settings: Settings) -> None:
        self.audience = ISSUER_PREFIX + settings.service
        self.keys: dict[str, tuple[Any, str]] = {}
        for issuer, rule in ISSUERS.items():
            if rule.audience != settings.service:
                continue  # a token of that issuer is never for this service
            raw = settings.get(KEY_VARIABLES[issuer])
            if raw:
                try:
                    key = load_pem_public_key(_read_key(str(raw)).encode())
                except (ValueError, TypeError) as error:
                    raise ConfigError(f"{KEY_VARIABLES[issuer]} is not a PEM public key: {error}") from None
                self.keys[issuer] = (key, _algorithm_of(key))
            elif settings.jwt_secret:
                self.keys[issuer] = (_derived(settings.jwt_secret, issuer), "HS256")

    @staticmethod
    def claims_issuer(token: str) -> str | None:
        """The machine issuer a token names (unverified), or None for a user token."""
        try:
            issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
        except jwt.PyJWTError:
            return None
        if isinstance(issuer, str) and issuer.startswith(ISSUER_PREFIX):
            return issuer[len(ISSUER_PREFIX) :]
        return None

    def verify(self, token: str, issuer: str) -> MachineGrant:
        rule, known = ISSUERS.get(issuer), self.keys.get(issuer)
        if rule is None or known is None:
            raise MachineTokenError("no machine token of this issuer is accepted here")
        key, algorithm = known
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self.audience,
                issuer=ISSUER_PREFIX + issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "iss", "aud", "sub", "scope", "brand_id"]},
            )
        except jwt.ExpiredSignatureError:
            raise MachineTokenError("expired") from None
        except jwt.PyJWTError:
            raise MachineTokenError("invalid") from None
        scope, brand_id = claims.get("scope"), claims.get("brand_id")
        if scope not in rule.scopes or type(brand_id) is not int:
            raise MachineTokenError("scope or brand not grantable by this issuer")
        if claims["exp"] - claims["iat"] > rule.max_lifetime_seconds:
            raise MachineTokenError("lifetime above the issuer's maximum")
        return MachineGrant(issuer, scope, str(claims["sub"]), brand_id, claims)
