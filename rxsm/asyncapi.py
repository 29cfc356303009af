"""AsyncAPI 3.0 documents of the three services, from their FastStream brokers.

Each service's subscribers are documented by FastStream itself; what each one publishes is declared
here (the services publish through the outbox, not through FastStream publishers).
"""

import json
from importlib import import_module
from pathlib import Path
from typing import Any

from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI

from rxsm.serve import SERVICES
from schemas import events, topics

PUBLISHES: dict[str, list[tuple[str, Any, str]]] = {
    "renewal": [
        (
            topics.RENEWAL_REQUESTED,
            events.RenewalRequested,
            "A renewable prescription was accepted.",
        ),
    ],
    "careteam": [
        (topics.CARE_TEAMS, events.CareTeamsOutcome, "Care teams resolved, or none available."),
    ],
    "messaging": [
        (topics.DRAFTS, events.DraftChange, "Draft created, updated or deleted."),
        (topics.MESSAGES, events.MessageOutcome, "Message sent, or its send failed."),
    ],
}
DOCS_DIR = Path("docs/asyncapi")


def service_broker(name: str) -> KafkaBroker:
    module, factory = SERVICES[name].factory.split(":")
    app = getattr(import_module(module), factory)()
    broker: KafkaBroker = app.state.broker
    for topic, schema, description in PUBLISHES[name]:
        broker.publisher(topic, schema=schema, description=description)
    return broker


def document(name: str) -> dict[str, Any]:
    spec = AsyncAPI(
        service_broker(name),
        title=f"rxsm {name} service",
        version="1",
        description=f"Kafka channels the rxsm {name} service consumes and publishes.",
    )
    rendered: dict[str, Any] = json.loads(spec.to_specification().to_json())
    return rendered


def write(out: Path = DOCS_DIR) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in SERVICES:
        path = out / f"{name}.json"
        path.write_text(json.dumps(document(name), indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written
