"""Usage metering (issue #12, ADR 0025): events accepted once per (customer, event id), counted once per accepted
batch document into sharded counters per hour, day and billing period, thresholds announced once per period, and
entitlements (soft cap, overage, hard stop).

This package is the pure core: no store, no handler, no clock of its own. `model` (the event, its payload hash,
verdicts), `ingestion` (one event and one request against the meters and the time), `windows` (windows, counter
keys, shards), `aggregation` (documents -> counter deltas, merged and applied), `thresholds`, `entitlements`.
Meters themselves are declared by the price book (billing_core.pricing.model.Meter)."""
