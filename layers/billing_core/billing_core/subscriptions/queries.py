"""Finding a subscription by our id or the provider's."""

from __future__ import annotations

from billing_core.errors import NotFoundError
from billing_core.subscriptions.model import Subscription
from billing_core.subscriptions.ports import SubscriptionReader

OUR_ID_PREFIX = "bsub_"


def find_subscription(reader: SubscriptionReader, identifier: str) -> Subscription:
    """By our id (bsub_...) or by the provider's (sub_...)."""
    found = reader.get(identifier) if identifier.startswith(OUR_ID_PREFIX) else reader.find_by_provider_id(identifier)
    if found is None:
        raise NotFoundError(
            f"no subscription {identifier}", code="subscription_not_found", details={"subscription_id": identifier}
        )
    return found
