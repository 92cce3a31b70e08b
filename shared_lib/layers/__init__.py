"""Tied and unshared building blocks, one module per idea (chapters 02, 06, 07, 08)."""
