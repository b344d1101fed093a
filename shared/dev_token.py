"""Mint a development token: `python -m shared.dev_token --brand 9 --role admin` (make token)."""

from __future__ import annotations

import argparse
import os

from .auth import mint_token
from .embedded_secret import dev_secret
from .permissions import ROLES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--brand", type=int, action="append", help="brand id (repeatable)")
    parser.add_argument("--brand-name", default="Humari")
    parser.add_argument("--role", choices=ROLES, default="admin")
    parser.add_argument("--user", default="martin")
    parser.add_argument("--sub", default="1")
    parser.add_argument("--hours", type=int, default=12)
    args = parser.parse_args()
    brands = [{"id": b, "name": args.brand_name, "role": args.role} for b in (args.brand or [9])]
    secret = os.environ.get("JWT_SECRET") or dev_secret()
    print(mint_token(secret, brands=brands, sub=args.sub, username=args.user, ttl_seconds=args.hours * 3600))


if __name__ == "__main__":
    main()
