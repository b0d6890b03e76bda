"""Inbound payment webhooks: verify on the raw body -> enqueue -> acknowledge (receive side), then
apply each event exactly once (apply side, see the Inbound webhooks issue)."""
