"""billing_core: the shared domain core of the billing-reliability bundle (a Lambda layer).

One sub-package per bounded context (operations, webhooks, ledger, ...); `ports` declares what the
domain needs from the outside world and `adapters` implements it with boto3 / stripe.
"""
