"""Queries, one module per table group. Every function takes the tenant it works in."""
