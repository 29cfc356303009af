"""The local Kafka broker starts, answers, stops by pid and restarts on the same data dir."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from localkafka import LocalKafka, LocalKafkaError, free_port, port_answers

pytestmark = pytest.mark.kafka


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_start_stop_restart(tmp_path: Path) -> None:
    kafka = LocalKafka(port=free_port(), controller_port=free_port(), data_dir=tmp_path / "kafka")
    try:
        kafka.start()
        pid = kafka.pid
        assert pid is not None
        assert kafka.is_running()
        assert kafka.pid_file.read_text().strip() == str(pid)
        assert kafka.bootstrap_servers == f"127.0.0.1:{kafka.port}"
        with socket.create_connection(("127.0.0.1", kafka.port), timeout=5):
            pass

        assert kafka.stop()
        assert not kafka.is_running()
        assert not _pid_exists(pid)
        assert not kafka.pid_file.exists()
        assert not port_answers("127.0.0.1", kafka.port)

        kafka.start()  # a restart on the same data dir: already formatted, same cluster id
        assert kafka.is_running()
        assert kafka.pid != pid
        assert port_answers("127.0.0.1", kafka.port)
        assert (kafka.data_dir / "server.log").read_text().count("Kafka Server started") == 2
    finally:
        kafka.stop()
    assert not kafka.is_running()
    assert not port_answers("127.0.0.1", kafka.port)


def test_start_refuses_a_taken_port(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        kafka = LocalKafka(port=squatter.getsockname()[1], data_dir=tmp_path / "kafka")
        with pytest.raises(LocalKafkaError, match="already in use"):
            kafka.start()
    assert not kafka.is_running()
