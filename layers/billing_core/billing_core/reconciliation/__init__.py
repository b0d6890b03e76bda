"""Reconciliation: the provider's records against our ledger and invoices, and the ledger against itself."""
