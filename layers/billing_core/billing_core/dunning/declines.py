"""Which declines are worth retrying. One table, in one place: a hard decline (the card is gone, stolen, refused
for good, or needs the customer) stops automatic retries until the payment method changes; a soft decline
(funds, a processor hiccup) is retried on the schedule.

A code we do not know is soft: the schedule is bounded, and stopping on an unknown code would end dunning on
the first new code a provider invents, while retrying it costs at most the schedule's few attempts."""

from __future__ import annotations

from enum import StrEnum


class DeclineClass(StrEnum):
    HARD = "hard"  # no automatic retry until the payment method changes
    SOFT = "soft"  # retried on schedule


HARD_DECLINES = frozenset(
    {
        # the card is gone or was never the holder's
        "stolen_card",
        "lost_card",
        "pickup_card",
        "fraudulent",
        "merchant_blacklist",
        "security_violation",
        # the issuer refuses this card for good, or the card details are wrong
        "do_not_honor",
        "card_not_supported",
        "currency_not_supported",
        "expired_card",
        "incorrect_number",
        "invalid_number",
        "invalid_account",
        "invalid_expiry_month",
        "invalid_expiry_year",
        "incorrect_cvc",
        "invalid_cvc",
        "restricted_card",
        "transaction_not_allowed",
        "new_account_information_available",
        "revocation_of_authorization",
        "revocation_of_all_authorizations",
        "stop_payment_order",
        # only the customer can complete it (3-D Secure, a new card)
        "authentication_required",
        "payment_method_missing",
        "provider_not_found",
    }
)

SOFT_DECLINES = frozenset(
    {
        "insufficient_funds",
        "processing_error",
        "try_again_later",
        "issuer_not_available",
        "reenter_transaction",
        "approve_with_id",
        "card_velocity_exceeded",
        "withdrawal_count_limit_exceeded",
        "generic_decline",
        "card_declined",
        "no_action_taken",
        "call_issuer",
        "unknown",
    }
)


def classify(decline_code: str | None) -> DeclineClass:
    """The class of a provider's decline code (Stripe's vocabulary, which the other providers map onto)."""
    if decline_code and decline_code.strip().lower() in HARD_DECLINES:
        return DeclineClass.HARD
    return DeclineClass.SOFT
