"""JWT verification, brand scope and the role check (docs/api.md §0, docs/security.md).

The accepted algorithms come from configuration, never from the token header; `exp` is required
and a token may not live longer than JWT_MAX_LIFETIME_SECONDS. `X-Brand-ID` selects one of the
brands the token lists; the role for that brand, through the role matrix (shared.permissions),
decides what the call may do. Machine tokens are scoped grants (shared.machine_identity).
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import jwt
from flask import current_app, g, request

from . import permissions
from .config import Settings
from .errors import ApiError
from .machine_identity import MachineGrant, MachineTokenError, MachineVerifier
from .permissions import ROLE_RANK

LEEWAY_SECONDS = 30
BRAND_HEADER = re.compile(r"-?[0-9]{1,18}")


@dataclass(frozen=True)
class Principal:
    """Who calls: a user with a role in the brand of X-Brand-ID, or a platform process holding
    one machine grant (shared.machine_identity) for that brand."""

    user_id: str
    username: str
    brand_id: int
    brand_name: str
    role: str
    brands: tuple[dict[str, Any], ...]
    machine: MachineGrant | None = None

    @property
    def brand(self) -> dict[str, Any]:
        return {"id": self.brand_id, "name": self.brand_name}

    @property
    def user(self) -> dict[str, Any]:
        return {"id": self.user_id, "username": self.username}

    def can(self, role: str) -> bool:
        """A user role at least this one (a machine grant is never a role)."""
        return self.machine is None and ROLE_RANK.get(self.role, -1) >= ROLE_RANK[role]


# user tokens remembered per process once verified (least recently used first out)
VERIFIED_TOKENS_KEPT = 1024


def _auth_error(detail: str, code: str = "AUTHENTICATION_FAILED") -> ApiError:
    return ApiError(401, code, detail, headers={"WWW-Authenticate": "Bearer"})


class TokenVerifier:
    """Users' tokens (the identity provider's key) and machine tokens addressed to this service
    (their issuers' keys); the accepted algorithms come from configuration, never the token."""

    def __init__(self, settings: Settings) -> None:
        self.key: str = settings.jwt_public_key or settings.jwt_secret or ""
        self.algorithms = list(settings.jwt_algorithms)
        self.issuer, self.audience = settings.jwt_issuer, settings.jwt_audience
        self.max_lifetime = settings.jwt_max_lifetime_seconds
        self.machines = MachineVerifier(settings)
        self._verified: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def verify(self, token: str) -> dict[str, Any]:
        """A user token's claims (401 otherwise). A token verified once is remembered until it
        expires (a client sends the same token with every request; checking its signature and
        claims again each time was a tenth of a small request's CPU)."""
        with self._lock:
            known = self._verified.get(token)
            if known is not None:
                self._verified.move_to_end(token)
        if known is not None:
            if known["exp"] + LEEWAY_SECONDS < time.time():
                raise _auth_error("Token has expired.", "TOKEN_EXPIRED")
            return known
        claims = self._verify(token)
        with self._lock:
            self._verified[token] = claims
            while len(self._verified) > VERIFIED_TOKENS_KEPT:
                self._verified.popitem(last=False)
        return claims

    def _verify(self, token: str) -> dict[str, Any]:
        required = ["exp", "sub"] + (["iss"] if self.issuer else []) + (["aud"] if self.audience else [])
        try:
            claims = jwt.decode(
                token,
                self.key,
                algorithms=self.algorithms,
                issuer=self.issuer,
                audience=self.audience,
                leeway=LEEWAY_SECONDS,
                options={"require": required, "verify_aud": bool(self.audience)},
            )
        except jwt.ExpiredSignatureError:
            raise _auth_error("Token has expired.", "TOKEN_EXPIRED") from None
        except jwt.PyJWTError:
            raise _auth_error("Invalid authentication token.") from None
        if "machine" in claims or "scope" in claims:
            # the broad `machine: true` tokens of old: machines now hold scoped grants only
            raise _auth_error("Invalid authentication token.")
        issued = claims.get("iat")
        start = issued if type(issued) is int else int(time.time())
        if claims["exp"] - start > self.max_lifetime + LEEWAY_SECONDS:
            raise _auth_error(f"Token lifetime exceeds the maximum of {self.max_lifetime} s.")
        if not isinstance(claims.get("brands"), list):
            raise _auth_error("Token carries no brands claim.")
        return claims

    def authenticate(self, token: str, brand_header: str | None) -> Principal:
        # a user token verified before needs no second look at its issuer (decoding it unverified
        # cost as much as the rest of the check)
        issuer = None if token in self._verified else MachineVerifier.claims_issuer(token)
        if issuer is None:
            return principal_from(self.verify(token), brand_header)
        try:
            grant = self.machines.verify(token, issuer)
        except MachineTokenError as error:
            if str(error) == "expired":
                raise _auth_error("Token has expired.", "TOKEN_EXPIRED") from None
            raise _auth_error("Invalid authentication token.") from None
        if parse_brand(brand_header) != grant.brand_id:
            raise ApiError(403, "BRAND_ACCESS_DENIED", "This token does not grant access to that brand.")
        return Principal(grant.subject, grant.subject, grant.brand_id, "", "", (), machine=grant)


def parse_brand(brand_header: str | None) -> int:
    if brand_header is None or not BRAND_HEADER.fullmatch(brand_header.strip()):
        raise ApiError(400, "BRAND_REQUIRED", "X-Brand-ID header with an integer brand id is required.")
    return int(brand_header.strip())


def principal_from(claims: dict[str, Any], brand_header: str | None) -> Principal:
    brand_id = parse_brand(brand_header)
    for brand in claims["brands"]:
        if not isinstance(brand, dict):
            continue
        # strictly an integer id (JSON true or 9.0 are not brand 1 or 9) and a known role
        given_id, role = brand.get("id"), brand.get("role")
        if type(given_id) is int and given_id == brand_id and isinstance(role, str) and role in ROLE_RANK:
            return Principal(
                user_id=str(claims["sub"]),
                username=str(claims.get("username", claims["sub"])),
                brand_id=brand_id,
                brand_name=str(brand.get("name", "")),
                role=role,
                brands=tuple(claims["brands"]),
            )
    raise ApiError(403, "BRAND_ACCESS_DENIED", "This token does not grant access to that brand.")


def authenticate_request(verifier: TokenVerifier) -> Principal:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _auth_error("Authentication credentials were not provided.")
    return verifier.authenticate(token.strip(), request.headers.get("X-Brand-ID"))


def authorize_request(principal: Principal) -> None:
    """The role matrix (shared.permissions) for the route being called."""
    found = permissions.current_action()
    if found is not None:  # an unknown route: its 404 follows
        authorize(*found, principal=principal)


def authorize(resource: str, action: str, principal: Principal | None = None) -> None:
    """403 unless the caller may do `action` on `resource` (views call it for body-dependent
    actions such as `optimize-schedules:apply`)."""
    who = principal or current_principal()
    if who.machine is not None:
        permissions.check(None, who.machine.scope, resource, action)
    else:
        permissions.check(who.role, None, resource, action)


def machine_target(**expected: int) -> None:
    """A machine grant acts only on the objects it names (its `task`, its `attempt`): 403 when
    the request names others. Users pass (their brand scope applies as usual)."""
    grant = current_principal().machine
    if grant is None:
        return
    for name, value in expected.items():
        if grant.claim_int(name) != value:
            raise ApiError(403, "PERMISSION_DENIED", f"This credential is not for this {name}.")


def machine_assertion(token: str, issuer: str, scope: str) -> MachineGrant | None:
    """A machine grant carried beside a user's call (scheduling's X-Schedule-Origin), for the
    caller's brand; None when it is not a valid grant of that issuer and scope."""
    verifier: TokenVerifier = current_app.extensions["taskhub.tokens"]
    try:
        grant = verifier.machines.verify(token, issuer)
    except MachineTokenError:
        return None
    if grant.scope != scope or grant.brand_id != current_principal().brand_id:
        return None
    return grant


def current_principal() -> Principal:
    principal = g.get("principal")
    if principal is None:  # a route outside /tasks/ asked for one: a programming error
        raise ApiError(401, "AUTHENTICATION_FAILED", "Authentication required.")
    return principal


def mint_token(
    secret: str,
    *,
    brands: list[dict[str, Any]],
    sub: str = "1",
    username: str = "dev",
    ttl_seconds: int = 12 * 3600,
    algorithm: str = "HS256",
    **claims: Any,
) -> str:
    """Development and test user tokens (HS256 deployments only; production verifies, never mints)."""
    now = int(time.time())
    payload = {"sub": sub, "username": username, "brands": brands, "iat": now, "exp": now + ttl_seconds}
    payload.update(claims)
    return jwt.encode(payload, secret, algorithm=algorithm)
