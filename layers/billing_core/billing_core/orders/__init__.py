"""Orders: quote at a locked price, then commit exactly once."""
