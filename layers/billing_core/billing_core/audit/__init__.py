"""Immutable audit trail: one entity event per mutation, projected from the tables' change streams."""
