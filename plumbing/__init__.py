"""Plumbing the three services share: settings, logging, telemetry, the Kafka broker and HTTP app."""
