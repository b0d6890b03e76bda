"""Invoices and charge attempts."""
