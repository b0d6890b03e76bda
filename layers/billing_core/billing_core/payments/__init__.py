"""Payments as the provider reports them, in our vocabulary (model), and the provider's API (ports)."""
