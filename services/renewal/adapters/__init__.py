"""The renewal service's edges: the journey ledger's database."""
