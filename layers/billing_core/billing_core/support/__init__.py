"""Support tools for people: customers' problem reports (ADR 0031)."""
