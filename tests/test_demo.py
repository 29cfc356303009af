"""`make run` on a fresh machine: its own broker, the three services, one renewal, then all stopped."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from localkafka import free_port, port_answers
from rxsm.serve import SERVICES

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.kafka
def test_the_demo_pushes_one_renewal_through_and_stops_what_it_started(tmp_path: Path) -> None:
    busy = [s.port for s in SERVICES.values() if port_answers("127.0.0.1", s.port)]
    assert not busy, f"the demo needs ports {busy} free"
    kafka_port = free_port()
    env = {**os.environ, "RXSM_DATA_DIR": str(tmp_path), "KAFKA_PORT": str(kafka_port)}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)

    run = subprocess.run(
        [sys.executable, "-m", "demo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )

    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    assert "Subject: Renewal Needed" in out
    assert "| Medication name, strength, and form: LISINOPRIL 10MG TAB" in out
    assert "received 'message.sent'" in out
    assert "trace id: " in out
    for name in SERVICES:
        assert f"stopped the {name} service" in out
    assert "stopped Kafka" in out
    assert not port_answers("127.0.0.1", kafka_port)
    assert not any(port_answers("127.0.0.1", s.port) for s in SERVICES.values())
    assert error_lines(tmp_path / "logs") == [], "a normal start and run logs no ERROR"


def error_lines(logs: Path) -> list[str]:
    """The ERROR (or worse) lines of every service's JSON log: alarms an SRE would be paged for."""
    assert sorted(log.stem for log in logs.glob("*.log")) == sorted(SERVICES)
    errors = []
    for log in sorted(logs.glob("*.log")):
        for line in log.read_text().splitlines():
            try:
                level = json.loads(line).get("level")
            except ValueError:
                level = "error"  # a line that is not JSON is a crash's traceback
            if level in ("error", "critical"):
                errors.append(f"{log.stem}: {line[:300]}")
    return errors
