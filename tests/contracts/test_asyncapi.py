"""Each service's AsyncAPI document: what it reads and writes on Kafka, as the wire carries it, and
valid for the AsyncAPI CLI (``make docs`` writes the documents; ``faststream docs gen`` the same)."""

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
import pytest
from typer.testing import CliRunner

from localkafka import free_port
from rxsm.asyncapi import document
from rxsm.cli import app
from rxsm.serve import SERVICES
from schemas import topics
from schemas.sealing import SealsPhi

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ASYNCAPI_CLI = "@asyncapi/cli@4.1.1"
"""The AsyncAPI CLI, pinned: ``npx`` fetches it from the npm registry on first use."""

EVENTS_ON: dict[str, set[str]] = {}
for event_type, topic in topics.TOPIC_OF_EVENT.items():
    EVENTS_ON.setdefault(topic, set()).add(event_type)

PUBLISHED_BY = {
    "renewal": {topics.RENEWAL_REQUESTED, topics.RENEWAL_REFUSED},
    "careteam": {topics.CARE_TEAMS},
    "messaging": {topics.DRAFTS, topics.MESSAGES},
    "journey": {topics.RENEWALS_CLOSED},
}
"""What each service publishes through its outbox (every one also dead-letters)."""


@pytest.fixture(scope="module")
def documents() -> dict[str, dict[str, Any]]:
    return {name: document(name) for name in SERVICES}


def resolve(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        *_, name = node["$ref"].split("/")
        node = doc["components"]["schemas"][name]
    return node


def event_types(doc: dict[str, Any], schema: dict[str, Any]) -> set[str]:
    """The ``event_type`` values a payload schema admits (none for a record with no type)."""
    schema = resolve(doc, schema)
    if "oneOf" in schema:
        return set().union(*(event_types(doc, option) for option in schema["oneOf"]))
    const = schema.get("properties", {}).get("event_type", {}).get("const")
    return {const} if const else set()


def operations(doc: dict[str, Any], action: str) -> list[tuple[str, dict[str, Any]]]:
    """(channel key, message) of each operation of ``action`` (send or receive)."""
    found = []
    for operation in doc["operations"].values():
        if operation["action"] != action:
            continue
        channel = operation["channel"]["$ref"].removeprefix("#/channels/")
        for reference in operation["messages"]:
            *_, name = reference["$ref"].split("/")
            message_ref = doc["channels"][channel]["messages"][name]["$ref"]
            message = doc["components"]["messages"][
                message_ref.removeprefix("#/components/messages/")
            ]
            found.append((channel, message))
    return found


def address(doc: dict[str, Any], channel: str) -> str:
    return str(doc["channels"][channel]["address"])


def base_topic(address: str) -> str:
    return address.split(".retry.", 1)[0]


def test_every_record_a_service_reads_is_described_with_every_event_its_topic_carries(
    documents: dict[str, dict[str, Any]],
) -> None:
    for name, doc in documents.items():
        for channel, message in operations(doc, "receive"):
            payload = resolve(doc, message["payload"])
            assert payload.get("type") != "null" and payload != {}, (name, channel)
            expected = EVENTS_ON.get(base_topic(address(doc, channel)), set())
            assert expected <= event_types(doc, message["payload"]), (name, channel)


def test_a_batch_consumer_reads_one_event_per_record_the_same_as_its_retry_consumer(
    documents: dict[str, dict[str, Any]],
) -> None:
    """The messaging service takes the care-team topic in batches (plumbing/broker.py): each record
    is still one event, never a list, and the same one its retry consumer takes one at a time."""
    doc = documents["messaging"]
    payloads = {address(doc, c): m["payload"] for c, m in operations(doc, "receive")}
    batch = payloads[topics.CARE_TEAMS]
    assert resolve(doc, batch).get("type") != "array"
    assert batch == payloads[topics.retry_topic(topics.CARE_TEAMS, "rxsm-messaging")]
    assert event_types(doc, batch) == {"careteams.resolved", "careteams.unavailable"}


def test_each_service_publishes_its_topics_events_and_dead_letters(
    documents: dict[str, dict[str, Any]],
) -> None:
    for name, doc in documents.items():
        sent = {
            address(doc, channel): event_types(doc, message["payload"])
            for channel, message in operations(doc, "send")
            if ".retry." not in address(doc, channel)
        }
        assert set(sent) == PUBLISHED_BY[name] | {topics.DEAD_LETTER}, name
        for topic, types in sent.items():
            assert types == EVENTS_ON[topic], (name, topic)


def test_a_failed_record_is_parked_on_the_retry_topic_its_group_reads_with_its_headers(
    documents: dict[str, dict[str, Any]],
) -> None:
    for name, doc in documents.items():
        read = {c for c, _ in operations(doc, "receive") if ".retry." in address(doc, c)}
        parked = {c: m for c, m in operations(doc, "send") if ".retry." in address(doc, c)}
        assert read and read == set(parked), name
        for message in parked.values():
            assert {"rxsm-retry-at-ms", "rxsm-attempts"} <= set(message["headers"]["properties"])


def test_phi_travels_sealed_in_every_payload(documents: dict[str, dict[str, Any]]) -> None:
    """schemas/sealing.py: on Kafka an event's PHI is one ``sealed`` value, as schemas/json says."""
    models: dict[str, type[SealsPhi]] = {}
    pending = SealsPhi.__subclasses__()
    while pending:
        model = pending.pop()
        models[model.__name__] = model
        pending.extend(model.__subclasses__())
    for name, doc in documents.items():
        sealed = {k: v for k, v in doc["components"]["schemas"].items() if k in models}
        assert sealed, name
        for model_name, schema in sealed.items():
            phi = set(models[model_name].SEALED) & set(models[model_name].model_fields)
            assert not set(schema["properties"]) & phi, (name, model_name)
            assert ("sealed" in schema.get("required", [])) == bool(phi), (name, model_name)


def test_the_server_is_the_cluster_the_service_is_configured_with(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka-1.internal:9093,kafka-2.internal:9093")
    doc = document("careteam")
    (server,) = doc["servers"].values()
    (variable,) = server["variables"]
    assert server["host"] == "{" + variable + "}"
    assert server["variables"][variable]["default"] == "kafka-1.internal:9093,kafka-2.internal:9093"
    assert "KAFKA_BOOTSTRAP_SERVERS" in server["variables"][variable]["description"]
    for channel in doc["channels"].values():
        assert channel["servers"] == [{"$ref": "#/servers/kafka"}]


@pytest.mark.parametrize("name", list(SERVICES))
def test_faststream_docs_gen_writes_the_same_document(
    name: str, documents: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    out = tmp_path / f"{name}.json"
    factory = f"services.{name}.app:asyncapi_app"
    subprocess.run(
        [BIN / "faststream", "docs", "gen", "--factory", factory, "--out", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert json.loads(out.read_text()) == documents[name]


def npx() -> str:
    found = shutil.which("npx")
    if found is None:
        if os.environ.get("RXSM_REQUIRE_TOOLS"):
            pytest.fail("npx (Node.js) is missing and RXSM_REQUIRE_TOOLS is set")
        pytest.skip("npx (Node.js) is not installed")
    return found


def test_the_asyncapi_cli_finds_every_document_valid_without_a_warning(tmp_path: Path) -> None:
    command = npx()
    result = CliRunner().invoke(app, ["asyncapi", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    written = sorted(tmp_path.iterdir())
    assert [path.stem for path in written] == sorted(SERVICES)
    for path in written:
        validated = subprocess.run(
            [command, "--yes", ASYNCAPI_CLI, "validate", "--fail-severity", "warn", str(path)],
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "CI": "true"},  # CI: the CLI sends no analytics
        )
        assert validated.returncode == 0, (path.name, validated.stdout, validated.stderr)
        assert "is valid" in validated.stdout, validated.stdout


@pytest.mark.kafka
def test_faststream_run_serves_the_service(kafka_bootstrap: str, tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "RXSM_DATA_DIR": str(tmp_path),
        "RXSM_ENV": "development",
    }
    command = [str(BIN / "faststream"), "run", "--factory", "services.careteam.app:asyncapi_app"]
    with (tmp_path / "careteam.log").open("w") as log:
        process = subprocess.Popen(
            [*command, "--port", str(port)], cwd=ROOT, env=env, stdout=log, stderr=log
        )
        try:
            deadline = time.monotonic() + 60
            ready = None
            while time.monotonic() < deadline and process.poll() is None:
                try:
                    ready = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=5)
                    break
                except httpx.TransportError:
                    time.sleep(0.5)
            assert ready is not None, (tmp_path / "careteam.log").read_text()
            assert ready.status_code == 200, ready.text
            assert ready.json()["service"] == "careteam"
        finally:
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=30)
    log_text = (tmp_path / "careteam.log").read_text()
    assert code in {0, -signal.SIGTERM}, log_text  # uvicorn, once shut down, dies of the signal
    assert "Application shutdown complete." in log_text
