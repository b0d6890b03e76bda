"""Subscriptions: the state machine and the provider-mirrored subscription aggregate."""
