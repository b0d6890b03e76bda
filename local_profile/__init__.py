"""This bundle's profile for the local runtime: what `python -m local_runtime` needs to know about the billing
bundle that a generic SAM engine should not.

- the fixed values of the local secrets (README "Local secrets"), overridable with
  BILLING_LOCAL_SECRET_<LogicalId>;
- the local operators (operators.py): the operators' user pool under a fixed id, the start hook that creates
  `admin` and `support` in it with fixed passwords, and their ID tokens minted at import (LOCAL_OPERATOR_TOKENS);
- the Stripe peer (stripe_peer.py): localstripe, a real Stripe test account, or none;
- the price-book seed (price_book_seed.py): a start hook that publishes price_books/*.json through
  POST /price-book as the local admin, so the stack starts with a price book in force (`--no-seed` turns it off);
- the banner's and the stack's names;
- the demo scenario (demo.py), which drives the stack over HTTP only.

pyproject.toml names PROFILE (`[tool.local-runtime] profile`); tests and scripts that build a RuntimeConfig
pass `bundle_profile(...)`. Like the engine, this package never imports the product (billing_core,
functions): it talks to the stack over HTTP and boto3 (tests/local_runtime/test_engine_boundaries.py)."""

from __future__ import annotations

import json
from dataclasses import replace

from local_profile.demo import run_demo
from local_profile.operators import (
    LOCAL_OPERATOR_PASSWORDS,
    LOCAL_OPERATOR_TOKENS,
    LOCAL_OPERATORS_USER_POOL_ID,
    OPERATORS_USER_POOL,
    OperatorSeed,
)
from local_profile.price_book_seed import PriceBookSeed
from local_profile.stripe_peer import StripePeer, running_stripe
from local_runtime.profile import Profile

# Fixed local secret values, documented in the README so anyone can sign or authenticate a request by
# hand. Override any of them with BILLING_LOCAL_SECRET_<LogicalId>. They exist only in moto.
LOCAL_SECRET_SEEDS = {
    # Stripe signs webhooks with the whole string as the HMAC key, prefix included.
    "StripeWebhookSecret": "whsec_local_c3RyaXBlLXdlYmhvb2stc2VjcmV0LWxvY2Fs",
    # Standard Webhooks secrets are whsec_<base64 of the key>.
    "DodoWebhookSecret": "whsec_bG9jYWwtZG9kby13ZWJob29rLXNlY3JldC0wMDAxIQ==",
    # localstripe accepts any key that starts with sk_ and is longer than five characters.
    "StripeApiKeySecret": "sk_test_local_billing_0123456789abcdef",
    # The usage ingestion key (x-api-key of POST /usage/events): the API key SAM makes for BillingApi's usage
    # plan. In AWS API Gateway generates its value; locally it is this one.
    "BillingApiApiKey": "local-usage-key-0123456789abcdef",
}
SECRET_OVERRIDE_PREFIX = "BILLING_LOCAL_SECRET_"

# Locally a dunning policy day passes in a second (README "Dunning locally"): the default schedule (retries on
# days 1, 3, 5, 7) plays in about 8 seconds, through the same state machine and policy as in AWS. An unknown
# charge outcome is read again after 2 s instead of a minute. `--parameter DunningTimeScale=1` runs real time.
# Consumers that retry by their own policy (ADR 0026) wait seconds, not minutes, between attempts locally; the
# poller's own redelivery delay (ADR 0005) still applies unless the runtime runs with --redelivery-delay-seconds -1.
_SECONDS = {"base_delay_seconds": 1, "factor": 2, "delay_seconds_max": 5, "delay_seconds_min": 1}
LOCAL_RETRY_POLICIES = json.dumps(
    dict.fromkeys(("notification_send", "canary_record", "dunning_start", "webhook_apply"), _SECONDS)
)
# Circuit breakers (ADR 0033) reopen for a probe after seconds, not a minute, and ramp up in seconds.
_BREAKER_SECONDS = {"cooldown_seconds": 2, "cooldown_seconds_max": 16, "ramp_step_seconds": 2, "refresh_seconds": 2}
LOCAL_BREAKER_POLICIES = json.dumps(dict.fromkeys(("stripe", "email"), _BREAKER_SECONDS))
LOCAL_PARAMETERS = {
    "DunningTimeScale": "86400",
    "DunningUnknownWaitSeconds": "2",
    "RetryPolicies": LOCAL_RETRY_POLICIES,
    "BreakerPolicies": LOCAL_BREAKER_POLICIES,
    # Bulk replay jobs (ADR 0032): one-second slices, and a probe window of 5 s (a replayed poison message is
    # back in the archive within a few seconds locally), so a job's pause shows in seconds, not minutes.
    "DeadLetterReplaySliceSeconds": "1",
    "DeadLetterReplayProbeWindowSeconds": "5",
}

PROFILE = Profile(
    name="billing",
    title="billing local runtime",
    stack_name="billing-local",
    secret_seeds=LOCAL_SECRET_SEEDS,
    secret_override_prefix=SECRET_OVERRIDE_PREFIX,
    secrets_note="fixed values in README 'Local secrets'; operators' tokens: see 'operators' above",
    # The operators' pool under a fixed id, so LOCAL_OPERATOR_TOKENS can be minted at import (operators.py).
    user_pool_ids={OPERATORS_USER_POOL: LOCAL_OPERATORS_USER_POOL_ID},
    peers=(StripePeer(),),
    parameters=LOCAL_PARAMETERS,
    # The operators first: the price-book seed publishes as the admin.
    start_hooks=(OperatorSeed(), PriceBookSeed()),
    demo=run_demo,
)


def bundle_profile(
    *,
    stripe: str = "local",
    stripe_port: int = 8420,
    stripe_api_base: str | None = None,
    seed_price_book: bool = True,
) -> Profile:
    """PROFILE with its Stripe peer and price-book seed configured, for code that builds a RuntimeConfig
    (tests, scripts)."""
    return replace(
        PROFILE,
        peers=(StripePeer(mode=stripe, port=stripe_port, api_base=stripe_api_base),),
        start_hooks=(OperatorSeed(), PriceBookSeed(enabled=seed_price_book)),
    )


__all__ = [
    "LOCAL_OPERATORS_USER_POOL_ID",
    "LOCAL_OPERATOR_PASSWORDS",
    "LOCAL_OPERATOR_TOKENS",
    "LOCAL_SECRET_SEEDS",
    "PROFILE",
    "SECRET_OVERRIDE_PREFIX",
    "OperatorSeed",
    "PriceBookSeed",
    "StripePeer",
    "bundle_profile",
    "running_stripe",
]
