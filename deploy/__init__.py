"""Deployment checks that need no Docker engine (``python -m deploy.image``)."""
