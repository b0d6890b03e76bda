"""Adapters implement billing_core.ports with boto3 / stripe and translate provider errors into
domain errors (billing_core.errors)."""
