"""Print one archived webhook event with its personal fields opened (for an operator whose own AWS role may
kms:Decrypt with the stack's PersonalDataKey; no function of the stack can).

    python scripts/reveal_webhook_event.py stripe:evt_... --table <WebhookEventsTable> --key <PersonalDataKeyArn>

Without --reveal the event is printed as stored (sealed fields stay sealed), which needs no KMS access. Every
reveal is a kms:Decrypt call, so CloudTrail records who looked. Exit codes: 0 printed, 1 not found or refused,
2 bad arguments."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "layers" / "billing_core"))

import boto3

from billing_core.adapters.kms_vault import KmsPersonalDataVault
from billing_core.errors import BillingError
from billing_core.privacy.personal_data import reveal


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("event_key", help="<provider>:<provider event id>, e.g. stripe:evt_...")
    parser.add_argument("--table", required=True, help="WebhookEventsTable's physical name")
    parser.add_argument("--key", help="PersonalDataKeyArn (stack output); required with --reveal")
    parser.add_argument("--reveal", action="store_true", help="open the sealed personal fields (kms:Decrypt)")
    args = parser.parse_args(argv)
    if args.reveal and not args.key:
        parser.error("--reveal needs --key")
    item = (
        boto3.client("dynamodb")
        .get_item(TableName=args.table, Key={"event_key": {"S": args.event_key}}, ConsistentRead=True)
        .get("Item")
    )
    if item is None:
        print(f"no event {args.event_key} in {args.table}", file=sys.stderr)
        return 1
    body = item["raw_body"]["S"]
    wrapped = item.get("personal_data_key", {}).get("S")
    if args.reveal and wrapped:
        try:
            body = reveal(body, wrapped_key=wrapped, context=args.event_key, vault=KmsPersonalDataVault(args.key))
        except BillingError as exc:
            print(f"could not open the sealed fields: {exc.code}: {exc}", file=sys.stderr)
            return 1
    print(json.dumps(json.loads(body), indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
