"""Shared fixtures: the real Kafka broker (started by the repo's own script) and the running flow."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from localkafka import LocalKafka, free_port

os.environ["RXSM_ENV"] = "development"
"""Tests run in development mode: the built-in development keys sign their tokens and seal their
events (a service outside it refuses to start on them; tests/plumbing/test_secrets.py)."""


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``KAFKA_BOOTSTRAP_SERVERS`` when set; otherwise a broker of our own for this test session."""
    existing = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if existing:
        yield existing
        return
    data_dir: Path = tmp_path_factory.mktemp("kafka")
    with LocalKafka(port=free_port(), data_dir=data_dir) as kafka:
        yield kafka.bootstrap_servers
