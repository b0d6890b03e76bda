"""What the billing run needs from other contexts beside its stores: the usage to bill on a subscription's next
invoice (billed in arrears; the usage context answers it: billing_core.usage.billing)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # annotations only
    from billing_core.billing.usage_lines import UsageToBill
    from billing_core.subscriptions.model import Subscription


class UsageSource(Protocol):
    def usage_to_bill(self, subscription: Subscription, now: datetime) -> UsageToBill:
        """The totals of the subscription's period just closed [current_period_start, current_period_end), the
        recounts of its earlier periods still open to late events that an invoice already billed, and the usage
        lines its issued invoices hold for those. Reads only; the same answer again is safe to bill only once
        because the invoice it goes on is written once per (subscription, period)."""
        ...
