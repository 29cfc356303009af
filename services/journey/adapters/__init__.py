"""The journey service's edges: the journey ledger's database."""
