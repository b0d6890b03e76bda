"""Finding a subscription by our id or the provider's."""

from __future__ import annotations

import re

from billing_core.errors import NotFoundError, ValidationFailedError
from billing_core.subscriptions.model import Subscription
from billing_core.subscriptions.ports import SubscriptionReader

OUR_ID_PREFIX = "bsub_"
OUR_ID = re.compile(r"bsub_[0-9a-f]{24}")
PROVIDER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{2,127}")


def find_subscription(reader: SubscriptionReader, identifier: str) -> Subscription:
    """By our id (bsub_...) or by the provider's (sub_...); a malformed id is refused before any read."""
    well_formed = OUR_ID if identifier.startswith(OUR_ID_PREFIX) else PROVIDER_ID
    if not well_formed.fullmatch(identifier):
        raise ValidationFailedError(
            "subscription ids look like bsub_<24 hex digits> (ours) or the provider's (e.g. sub_...)",
            code="invalid_subscription_id",
        )
    found = reader.get(identifier) if identifier.startswith(OUR_ID_PREFIX) else reader.find_by_provider_id(identifier)
    if found is None:
        raise NotFoundError(
            f"no subscription {identifier}", code="subscription_not_found", details={"subscription_id": identifier}
        )
    return found
