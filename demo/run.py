"""Start Kafka (unless one is given) and the four services (renewal, careteam, messaging, journey),
push one renewal through, and stop.

python -m demo           # run, print the journey, stop what it started and remove what it made
python -m demo --keep    # leave everything running (and say how to stop it)

Each service listens on ``RXSM_RENEWAL_PORT``, ``RXSM_CARETEAM_PORT``, ``RXSM_MESSAGING_PORT`` and
``RXSM_JOURNEY_PORT`` when set, else on its usual port (8001-8004), or on a free port when that one is
taken. The run reads the
flow's events without joining a consumer group, so it leaves none on the broker; it removes the
databases it made under ``RXSM_DATA_DIR`` (default ``.run``) and keeps the services' logs there, and
the local broker's data, which ``make kafka-up`` shares.
"""

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer

from demo.requests import VETERAN, renewal_request
from localkafka import LocalKafka, free_port, port_answers
from plumbing.auth import AuthSettings, issue_service_token, issue_token
from rxsm.kafka_reads import partitions_of
from rxsm.serve import PORT_ENV, SERVICES
from schemas import topics

RUN_DIR = Path(os.environ.get("RXSM_DATA_DIR", ".run"))
LOGS = "logs"
KAFKA_DATA = "kafka"
KEPT = (LOGS, KAFKA_DATA)
"""What a run leaves in RUN_DIR: the services' logs, and the local broker's data."""
PORT_VARS = {name: f"RXSM_{name.upper()}_PORT" for name in SERVICES}
"""The environment variable that sets each service's port for the demo."""


def say(text: str) -> None:
    print(text, flush=True)


def start_kafka() -> tuple[str, LocalKafka | None]:
    """The bootstrap address, and the broker this run started (None when it reuses one)."""
    given = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if given:
        say(f"using Kafka at {given} (KAFKA_BOOTSTRAP_SERVERS)")
        return given, None
    kafka = LocalKafka(
        port=int(os.environ.get("KAFKA_PORT", "9092")), data_dir=RUN_DIR / KAFKA_DATA
    )
    if kafka.is_running() and port_answers(kafka.host, kafka.port):
        say(f"using the local Kafka already running at {kafka.bootstrap_servers} (pid {kafka.pid})")
        return kafka.bootstrap_servers, None
    say("starting Kafka (the first run downloads its jars from Maven Central)...")
    kafka.start()
    say(f"Kafka is up at {kafka.bootstrap_servers} (pid {kafka.pid})")
    return kafka.bootstrap_servers, kafka


def service_ports() -> dict[str, int]:
    """Each service's port: its RXSM_<SERVICE>_PORT when set (it must be free), else its usual port,
    else (when that one is taken) a free one."""
    ports: dict[str, int] = {}
    for name, service in SERVICES.items():
        variable = PORT_VARS[name]
        given = os.environ.get(variable)
        if given:
            port = int(given)
            if port_answers("127.0.0.1", port):
                raise SystemExit(f"port {port} for the {name} service ({variable}) is in use")
        elif port_answers("127.0.0.1", service.port) or service.port in ports.values():
            port = free_port()
            while port in ports.values():
                port = free_port()
            say(
                f"port {service.port} is in use: the {name} service takes {port} (or set {variable})"
            )
        else:
            port = service.port
        ports[name] = port
    return ports


def start_services(bootstrap: str, ports: dict[str, int]) -> dict[str, subprocess.Popen[bytes]]:
    logs = RUN_DIR / LOGS
    logs.mkdir(parents=True, exist_ok=True)
    processes = {}
    for name in SERVICES:
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "RXSM_DATA_DIR": str(RUN_DIR),
            "RXSM_ENV": "development",  # the demo's tokens and events use the development keys
            PORT_ENV: str(ports[name]),
        }
        with (logs / f"{name}.log").open("ab") as log:
            processes[name] = subprocess.Popen(
                [sys.executable, "-m", "rxsm", "serve", name],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        say(
            f"started the {name} service on http://127.0.0.1:{ports[name]}"
            f" (pid {processes[name].pid})"
        )
    return processes


def wait_healthy(
    processes: dict[str, subprocess.Popen[bytes]], ports: dict[str, int], within: float = 120
) -> None:
    deadline = time.monotonic() + within
    for name, process in processes.items():
        url = f"http://127.0.0.1:{ports[name]}/health"
        while True:
            if process.poll() is not None:
                raise SystemExit(f"the {name} service exited; see {RUN_DIR}/{LOGS}/{name}.log")
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"the {name} service did not become healthy; see its log")
            time.sleep(0.3)


async def message_sent_event(bootstrap: str, renewal_id: str, within: float = 30) -> dict[str, Any]:
    """The renewal's outcome on the messages topic, read from the start of every partition without
    joining a consumer group (a group would outlive the demo on the broker)."""
    partitions = await partitions_of(bootstrap, topics.MESSAGES)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    event: dict[str, Any] = json.loads(record.value)
                    if event.get("renewal_id") == renewal_id:
                        return event
    finally:
        await consumer.stop()
    raise SystemExit("no 'message sent' event arrived")


async def journey(bootstrap: str, ports: dict[str, int]) -> None:
    """One renewal: request (Meds) -> care team -> prefilled draft -> send (SM)."""
    renewal_url = f"http://127.0.0.1:{ports['renewal']}"
    messaging_url = f"http://127.0.0.1:{ports['messaging']}"
    veteran = {"Authorization": f"Bearer {issue_token(VETERAN, AuthSettings())}"}
    request = renewal_request()
    async with httpx.AsyncClient(timeout=10) as http:
        medications_app = {"Authorization": f"Bearer {issue_service_token(AuthSettings())}"}
        accepted = await http.post(
            f"{renewal_url}/v1/renewals", json=request, headers=medications_app
        )
        accepted.raise_for_status()
        renewal_id = accepted.json()["renewal_id"]
        trace_id = accepted.json()["trace_id"]
        say(f"\n1. Medications asked for a renewal: renewal {renewal_id} (202 Accepted)")

        draft: dict[str, Any] | None = None
        deadline = time.monotonic() + 30
        while draft is None and time.monotonic() < deadline:
            response = await http.get(
                f"{messaging_url}/v1/renewals/{renewal_id}/draft", headers=veteran
            )
            draft = response.json() if response.status_code == 200 else None
            await asyncio.sleep(0.2)
        if draft is None:
            raise SystemExit(f"no draft was created within 30 s; see {RUN_DIR}/{LOGS}/")
        say(f"2. SM prefilled a draft to care team {draft['recipient_id']}:")
        say(f"   Category: {draft['category']}   Subject: {draft['subject']}")
        for line in draft["body"].splitlines():
            say(f"   | {line}")

        sent = await http.post(f"{messaging_url}/v1/drafts/{draft['id']}/send", headers=veteran)
        sent.raise_for_status()
        say(f"3. The Veteran sent it: message {sent.json()['message_id']}")

    event = await message_sent_event(bootstrap, renewal_id)
    say(f"4. SM consumers received '{event['event_type']}' on {topics.MESSAGES}:")
    say("   " + json.dumps(event))
    found = await sent_journey(f"http://127.0.0.1:{ports['journey']}", renewal_id)
    say(f"5. The journey service followed it to '{found['status']}', step by step:")
    for step in found["steps"]:
        say(f"   {step['step']:<22} {step['tool']:<5} {step['at']}")
    say(f"\ntrace id: {trace_id}")


async def sent_journey(journey_url: str, renewal_id: str, within: float = 30) -> dict[str, Any]:
    """The renewal's journey once the journey service has seen it sent."""
    sre = {"Authorization": f"Bearer {issue_service_token(AuthSettings(), subject='rxsm-cli')}"}
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(timeout=10, headers=sre) as http:
        while time.monotonic() < deadline:
            response = await http.get(f"{journey_url}/v1/renewals/{renewal_id}")
            if response.status_code == 200 and response.json()["status"] == "sent":
                found: dict[str, Any] = response.json()
                return found
            await asyncio.sleep(0.2)
    raise SystemExit(f"the journey service did not see the renewal sent; see {RUN_DIR}/{LOGS}/")


def stop(processes: dict[str, subprocess.Popen[bytes]], kafka: LocalKafka | None) -> None:
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for name, process in processes.items():
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        say(f"stopped the {name} service (pid {process.pid})")
    if kafka is not None:
        pid = kafka.pid
        kafka.stop()
        say(f"stopped Kafka (pid {pid})")


def run_data() -> set[str]:
    """The names in RUN_DIR now."""
    return {path.name for path in RUN_DIR.iterdir()} if RUN_DIR.is_dir() else set()


def remove_made(before: set[str]) -> None:
    """Remove what this run made in RUN_DIR (the services' databases), but the logs and the broker's
    data."""
    made = sorted(run_data() - before - set(KEPT))
    for name in made:
        path = RUN_DIR / name
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    if made:
        say(f"removed what this run made in {RUN_DIR}: {', '.join(made)}")
    say(f"the services' logs are in {RUN_DIR / LOGS}")


def main(argv: list[str]) -> int:
    keep = "--keep" in argv
    before = run_data()
    ports = service_ports()
    bootstrap, kafka = start_kafka()
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        processes = start_services(bootstrap, ports)
        wait_healthy(processes, ports)
        asyncio.run(journey(bootstrap, ports))
    except BaseException:
        stop(processes, kafka)
        if not keep:
            remove_made(before)
        raise
    if keep:
        pids = ", ".join(f"{name} {p.pid}" for name, p in processes.items())
        say(f"\nstill running: services ({pids}); logs in {RUN_DIR}/{LOGS}")
        for name in ("journey", "renewal"):
            if ports[name] != SERVICES[name].port:
                variable = f"RXSM_{name.upper()}_URL"
                say(f"for `rxsm journey`: export {variable}=http://127.0.0.1:{ports[name]}")
        if kafka is not None:
            say(f"and Kafka (pid {kafka.pid}); `make kafka-down` stops it")
        say("stop the services with: kill " + " ".join(str(p.pid) for p in processes.values()))
        return 0
    say("")
    stop(processes, kafka)
    remove_made(before)
    return 0
