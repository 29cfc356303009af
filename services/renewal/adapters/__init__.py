"""The renewal service's edges: its database of renewal requests."""
