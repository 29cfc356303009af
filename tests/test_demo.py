"""`make run` on a fresh machine: its own broker, the three services on the ports the environment
gives, one renewal, then all stopped and nothing of its own left behind but the logs."""

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import CoordinatorNotAvailableError, GroupLoadInProgressError

from demo.requests import renewal_request
from demo.run import PORT_VARS
from localkafka import LocalKafka, free_port, port_answers
from rxsm.serve import SERVICES

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.kafka
def test_the_demo_pushes_one_renewal_through_and_stops_what_it_started(tmp_path: Path) -> None:
    kafka_port = free_port()
    ports = {name: free_port() for name in SERVICES}
    env = {
        **os.environ,
        "RXSM_DATA_DIR": str(tmp_path),
        "KAFKA_PORT": str(kafka_port),
        **{PORT_VARS[name]: str(port) for name, port in ports.items()},
    }
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
    medication = renewal_request()["prescription"]["prescriptionName"]
    assert f"| Medication name, strength, and form: {medication}" in out
    assert "received 'message.sent'" in out
    assert "trace id: " in out
    for name, port in ports.items():
        assert f"started the {name} service on http://127.0.0.1:{port} " in out
        assert f"stopped the {name} service" in out
    assert "stopped Kafka" in out
    assert not port_answers("127.0.0.1", kafka_port)
    assert not any(port_answers("127.0.0.1", port) for port in ports.values())
    assert error_lines(tmp_path / "logs") == [], "a normal start and run logs no ERROR"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["kafka", "logs"], (
        "the services' databases are removed; their logs and the broker's data stay"
    )
    groups = groups_left_on(tmp_path / "kafka", kafka_port)
    assert {"rxsm-careteam", "rxsm-messaging", "rxsm-journey"} <= groups, (
        "the services' own groups stay"
    )
    assert {group for group in groups if not of_a_service(group)} == set(), (
        "the demo leaves no consumer group of its own on the broker"
    )


def of_a_service(group: str) -> bool:
    """A service's consumer group: rxsm-<service>, or one of its own (rxsm-renewal-closed,
    rxsm-careteam.retry)."""
    return any(
        group == f"rxsm-{name}" or group.startswith((f"rxsm-{name}-", f"rxsm-{name}."))
        for name in SERVICES
    )


def groups_left_on(data_dir: Path, port: int) -> set[str]:
    """The consumer groups the broker the demo stopped still holds: restarted on its data."""
    voters = (data_dir / "server.properties").read_text()
    [controller_port] = re.findall(r"controller\.quorum\.voters=1@[\d.]+:(\d+)", voters)
    with LocalKafka(port=port, controller_port=int(controller_port), data_dir=data_dir) as kafka:
        return asyncio.run(list_groups(kafka.bootstrap_servers))


async def list_groups(bootstrap: str, within: float = 30) -> set[str]:
    """The broker's groups, once it has loaded them (a restarted broker lists none until then)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + within
        while True:
            try:
                groups = {str(group) for group, *_ in await admin.list_consumer_groups()}
            except (GroupLoadInProgressError, CoordinatorNotAvailableError):
                groups = set()
            if groups or time.monotonic() > deadline:
                return groups
            await asyncio.sleep(0.5)
    finally:
        await admin.close()


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
