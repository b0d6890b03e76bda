"""Pricing: versioned price books and exact, deterministic proration in integer minor units."""
