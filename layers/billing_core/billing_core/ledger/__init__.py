"""Double-entry ledger: balanced transactions in integer minor units, append-only."""
