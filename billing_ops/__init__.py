"""Operator tools that drive a deployed (or local) stack through its admin API, as a person would through the
console: `python -m billing_ops dlq ls|show|replay|discard` (docs/runbooks/dlq-replay.md). HTTP only: it imports
nothing of the product, so what it shows is what the API answers."""
