"""Publish a price-book document through the admin route (POST /price-book).

    python scripts/publish_price_book.py price_books/2026-11-01.json \\
        --api-url http://127.0.0.1:3000 --token-env BILLING_ADMIN_TOKEN

The document is validated locally first (the same model the route uses), so a typo fails here, not
half-way. Exit codes: 0 published, 1 refused by the API (the body says why), 2 bad input or no answer."""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "layers" / "billing_core"))

from pydantic import ValidationError

from billing_core.pricing.model import PriceBook


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("document", type=Path)
    parser.add_argument("--api-url", required=True, help="the stack's API base URL (ApiUrl output)")
    parser.add_argument(
        "--token-env", default="BILLING_ADMIN_TOKEN", help="environment variable holding an admin operator's ID token"
    )
    args = parser.parse_args(argv)
    token = os.environ.get(args.token_env)
    if not token:
        print(f"set {args.token_env} to an admin operator's ID token", file=sys.stderr)
        return 2
    try:
        book = PriceBook.model_validate_json(args.document.read_text())
    except (OSError, ValidationError) as exc:
        print(f"{args.document}: {exc}", file=sys.stderr)
        return 2
    request = urllib.request.Request(  # noqa: S310 - the operator names the URL
        f"{args.api_url.rstrip('/')}/price-book",
        data=book.model_dump_json().encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            print(json.dumps(json.loads(response.read()), indent=2))
            return 0
    except urllib.error.HTTPError as exc:
        print(f"{exc.code}: {exc.read().decode(errors='replace')}", file=sys.stderr)
        return 1
    except urllib.error.URLError as exc:
        print(f"{args.api_url} did not answer: {exc.reason}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
