"""Recovery of dead letters (ADR 0029): archive what the DLQs hold, and let a person replay or discard it."""
