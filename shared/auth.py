"""JWT verification and brand scope (API.md §0).

The accepted algorithms come from configuration, never from the token header; `exp` is required.
`X-Brand-ID` selects one of the brands the token lists; the role for that brand decides writes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar

import jwt
from flask import g, request

from .config import Settings
from .errors import ApiError

ROLES = ("viewer", "operator", "admin")
ROLE_RANK = {role: rank for rank, role in enumerate(ROLES)}
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
LEEWAY_SECONDS = 30


@dataclass(frozen=True)
class Principal:
    user_id: str
    username: str
    brand_id: int
    brand_name: str
    role: str
    brands: tuple[dict[str, Any], ...]

    @property
    def brand(self) -> dict[str, Any]:
        return {"id": self.brand_id, "name": self.brand_name}

    @property
    def user(self) -> dict[str, Any]:
        return {"id": self.user_id, "username": self.username}

    def can(self, role: str) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[role]


def _auth_error(detail: str, code: str = "AUTHENTICATION_FAILED") -> ApiError:
    return ApiError(401, code, detail, headers={"WWW-Authenticate": "Bearer"})


class TokenVerifier:
    def __init__(self, settings: Settings) -> None:
        self.key: str = settings.jwt_public_key or settings.jwt_secret or ""
        self.algorithms = list(settings.jwt_algorithms)
        self.issuer, self.audience = settings.jwt_issuer, settings.jwt_audience

    def verify(self, token: str) -> dict[str, Any]:
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
        if not isinstance(claims.get("brands"), list):
            raise _auth_error("Token carries no brands claim.")
        return claims


def principal_from(claims: dict[str, Any], brand_header: str | None) -> Principal:
    if brand_header is None or not brand_header.strip().lstrip("-").isdigit():
        raise ApiError(400, "BRAND_REQUIRED", "X-Brand-ID header with an integer brand id is required.")
    brand_id = int(brand_header)
    if claims.get("machine") is True:
        # a platform process (worker, scheduler) acting for the brand of the task it handles
        return Principal(
            user_id=str(claims["sub"]),
            username=str(claims.get("username", claims["sub"])),
            brand_id=brand_id,
            brand_name="",
            role="operator",
            brands=(),
        )
    for brand in claims["brands"]:
        if isinstance(brand, dict) and brand.get("id") == brand_id and brand.get("role") in ROLE_RANK:
            return Principal(
                user_id=str(claims["sub"]),
                username=str(claims.get("username", claims["sub"])),
                brand_id=brand_id,
                brand_name=str(brand.get("name", "")),
                role=brand["role"],
                brands=tuple(claims["brands"]),
            )
    raise ApiError(403, "BRAND_ACCESS_DENIED", "This token does not grant access to that brand.")


def authenticate_request(verifier: TokenVerifier) -> Principal:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _auth_error("Authentication credentials were not provided.")
    claims = verifier.verify(token.strip())
    principal = principal_from(claims, request.headers.get("X-Brand-ID"))
    needed = "operator" if request.method in WRITE_METHODS else "viewer"
    if not principal.can(needed):
        raise ApiError(403, "PERMISSION_DENIED", f"This action needs the {needed} role.")
    return principal


def current_principal() -> Principal:
    principal = g.get("principal")
    if principal is None:  # a route outside /tasks/ asked for one: a programming error
        raise ApiError(401, "AUTHENTICATION_FAILED", "Authentication required.")
    return principal


F = TypeVar("F", bound=Callable[..., Any])


def require_role(role: str) -> Callable[[F], F]:
    """Stricter than the method default (viewer reads, operator writes): e.g. admin deletes."""

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not current_principal().can(role):
                raise ApiError(403, "PERMISSION_DENIED", f"This action needs the {role} role.")
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def mint_machine_token(secret: str, name: str, ttl_seconds: int = 24 * 3600) -> str:
    """A token for a platform process (worker, scheduler): operator in any brand, never admin."""
    return mint_token(
        secret, brands=[], sub=f"machine:{name}", username=name, ttl_seconds=ttl_seconds, machine=True
    )


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
    """Development and test tokens (HS256 deployments only; production verifies, never mints)."""
    now = int(time.time())
    payload = {"sub": sub, "username": username, "brands": brands, "iat": now, "exp": now + ttl_seconds}
    payload.update(claims)
    return jwt.encode(payload, secret, algorithm=algorithm)
