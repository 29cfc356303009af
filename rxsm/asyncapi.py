"""AsyncAPI 3.0 documents of the rxsm services, and each service as a FastStream application.

FastStream documents what a service's broker consumes. What it cannot see is added here:

- what each service publishes through its outbox (``PUBLISHES``), and what its consumers publish
  when a record fails (plumbing/deadletter.py): dead letters on the dead-letter topic, and records
  parked on the consumer group's retry topics (a send operation on the retry topic's channel, whose
  messages carry the retry headers);
- what a batch subscriber takes. Its handler reads raw records (to settle each one alone), so
  FastStream sees no event and writes a payload of its own making. Each record is one event, the
  same the topic's publisher sends and its retry consumer takes, read up to ``BATCH_RECORDS`` at a
  time: the payload is that event (a list is how the handler sees them, never what a record holds);
- PHI sealed on the wire (schemas/sealing.py): every event in its wire shape, ``sealed`` in place of
  its PHI fields, as in the exported JSON Schemas (schemas/json);
- the Kafka cluster: one server whose host is the variable ``bootstrap_servers``, its default the
  service's ``KAFKA_BOOTSTRAP_SERVERS`` setting where the document was made.

``rxsm asyncapi`` writes the documents. ``faststream docs gen --factory
services.<name>.app:asyncapi_app`` writes the same document for one service, and ``faststream run
--factory services.<name>.app:asyncapi_app`` serves the service as ``rxsm serve`` does.
"""

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from faststream import FastStream
from faststream.kafka import KafkaBroker
from faststream.kafka.subscriber.usecase import BatchSubscriber, LogicSubscriber
from faststream.specification import AsyncAPI
from faststream.specification.asyncapi.utils import clear_key, ref

from plumbing.auth import DEVELOPMENT
from plumbing.broker import BATCH_RECORDS
from plumbing.deadletter import (
    ATTEMPTS,
    LETTER_HISTORY,
    ORIGINAL_OFFSET,
    ORIGINAL_PARTITION,
    ORIGINAL_TOPIC,
    REDELIVERIES,
    RETRY_AT,
    RETRY_GROUP_SUFFIX,
)
from plumbing.settings import ServiceSettings
from rxsm.serve import HOST_ENV, PORT_ENV, SERVER_OPTIONS, SERVICES
from schemas import events, topics
from schemas.sealing import SealsPhi


@dataclass(frozen=True)
class Publication:
    topic: str
    payload: Any
    """The event model, or an annotated union of the topic's events."""
    description: str


PUBLISHES: dict[str, tuple[Publication, ...]] = {
    "renewal": (
        Publication(
            topics.RENEWAL_REQUESTED,
            events.RenewalRequested,
            "A renewable prescription was accepted.",
        ),
        Publication(
            topics.RENEWAL_REFUSED,
            events.RenewalRefused,
            "A renewal request was refused at intake (not renewable, or the flow closed).",
        ),
    ),
    "careteam": (
        Publication(
            topics.CARE_TEAMS, events.CareTeamsOutcome, "Care teams resolved, or none available."
        ),
    ),
    "messaging": (
        Publication(topics.DRAFTS, events.DraftChange, "Draft created, updated or deleted."),
        Publication(topics.MESSAGES, events.MessageOutcome, "Message sent, or its send failed."),
    ),
    "journey": (
        Publication(
            topics.RENEWALS_CLOSED,
            events.RenewalClosed,
            "A renewal's journey closed: the prescription may be requested anew.",
        ),
    ),
}
"""What each service publishes through its outbox."""

DEAD_LETTERS = Publication(
    topics.DEAD_LETTER,
    events.DeadLetter,
    "A record this service's consumers could not process (malformed, invalid, or failing after "
    "every retry): its original bytes, sealed, where it came from and why.",
)
"""What every service that consumes publishes when a record cannot be processed."""

RETRY_HEADERS: dict[str, Any] = {
    "type": "object",
    "description": "A record parked for a later try carries its original headers and these.",
    "properties": {
        ATTEMPTS: {"type": "string", "description": "Tries so far (an integer)."},
        REDELIVERIES: {"type": "string", "description": "Rounds through the retry topic so far."},
        RETRY_AT: {"type": "string", "description": "When it is due, Unix time in ms."},
        ORIGINAL_TOPIC: {"type": "string", "description": "The topic it was first read from."},
        ORIGINAL_PARTITION: {"type": "string", "description": "Its partition there."},
        ORIGINAL_OFFSET: {"type": "string", "description": "Its offset there."},
        LETTER_HISTORY: {
            "type": "string",
            "description": "A replayed dead letter's earlier letters (JSON list; no PHI).",
        },
    },
    "additionalProperties": {"type": "string"},
}

SERVER = "kafka"
SERVER_VARIABLE = "bootstrap_servers"


@dataclass(frozen=True)
class Document:
    """A finished AsyncAPI document, as FastStream's CLI reads one (``faststream docs``)."""

    content: dict[str, Any]

    @property
    def title(self) -> str:
        return str(self.content["info"]["title"])

    def to_jsonable(self) -> dict[str, Any]:
        return self.content

    def to_json(self) -> str:
        return json.dumps(self.content)

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.content, sort_keys=False)


class ServiceDocument(AsyncAPI):
    """The AsyncAPI document of one service's broker, with what FastStream cannot see added."""

    def __init__(self, name: str, broker: KafkaBroker) -> None:
        publications = PUBLISHES[name] + ((DEAD_LETTERS,) if broker.subscribers else ())
        for publication in publications:
            broker.publisher(
                publication.topic, schema=publication.payload, description=publication.description
            )
        super().__init__(
            broker,
            title=f"rxsm {name} service",
            version="1",
            description=f"Kafka channels the rxsm {name} service consumes and publishes.",
            identifier=f"urn:rxsm:{name}",
        )
        self.broker = broker

    def to_specification(self) -> Document:
        content: dict[str, Any] = super().to_specification().to_jsonable()
        _name_the_server(content)
        _batch_records(content, self.broker)
        _retry_parking(content, self.broker)
        _wire_shapes(content)
        _drop_unused_schemas(content)
        return Document(content)


class ServiceApplication(FastStream):
    """One service for FastStream's CLI. ``schema`` is its AsyncAPI document (``faststream docs``);
    ``faststream run`` serves the service, HTTP API and Kafka consumers, as ``rxsm serve`` does:
    the broker starts and stops with the HTTP app. The FastStream app holds no broker of its own,
    so it changes nothing in the service's."""

    def __init__(self, name: str, http: FastAPI) -> None:
        super().__init__(specification=ServiceDocument(name, http.state.broker))
        self.name = name
        self.http = http

    async def run(
        self,
        log_level: int = logging.INFO,
        run_extra_options: dict[str, Any] | None = None,
        sleep_time: float = 0.1,
    ) -> None:
        """Serve on ``--host``/``--port`` (else RXSM_HTTP_HOST, RXSM_HTTP_PORT, else the
        service's own port) until SIGTERM/SIGINT."""
        options = run_extra_options or {}
        host = str(options.get("host") or os.environ.get(HOST_ENV, "127.0.0.1"))
        port = int(str(options.get("port") or os.environ.get(PORT_ENV, SERVICES[self.name].port)))
        config = uvicorn.Config(self.http, host=host, port=port, **SERVER_OPTIONS)
        await uvicorn.Server(config).serve()


def application(name: str, settings: ServiceSettings | None = None) -> ServiceApplication:
    """Service ``name`` (a key of rxsm.serve.SERVICES), built by its factory, for FastStream."""
    module, factory = SERVICES[name].factory.split(":")
    return ServiceApplication(name, getattr(import_module(module), factory)(settings))


def document(name: str) -> dict[str, Any]:
    """Service ``name``'s AsyncAPI document. Its app is built to be read, never started, so in
    development mode: making the document needs no key; every other setting is the environment's."""
    app = application(name, ServiceSettings(env=DEVELOPMENT))
    content: dict[str, Any] = app.schema.to_specification().to_jsonable()
    return content


def write(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in SERVICES:
        path = out / f"{name}.json"
        path.write_text(json.dumps(document(name), indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written


def _name_the_server(content: dict[str, Any]) -> None:
    """FastStream writes one server per bootstrap address, named ``development``: one ``kafka``
    server instead, whose host is a variable defaulting to the service's setting."""
    servers = list(content["servers"].values())
    hosts = ",".join(server["host"] for server in servers)
    server = {key: value for key, value in servers[0].items() if key not in {"host", "pathname"}}
    content["servers"] = {
        SERVER: {
            **server,
            "host": "{" + SERVER_VARIABLE + "}",
            "description": "The Kafka cluster the service is configured with.",
            "variables": {
                SERVER_VARIABLE: {
                    "default": hosts,
                    "description": "KAFKA_BOOTSTRAP_SERVERS (or RXSM_KAFKA_BOOTSTRAP_SERVERS): "
                    "the cluster's bootstrap brokers, host:port[,host:port...]. The default is "
                    "the setting where this document was made.",
                }
            },
        }
    }
    for channel in content["channels"].values():
        channel["servers"] = [ref("servers", SERVER)]


def _channels_of(subscriber: Any) -> dict[str, str]:
    """Address -> the document's channel key, for each channel of ``subscriber``."""
    return {spec.address: clear_key(key) for key, spec in subscriber.schema().items()}


def _message(content: dict[str, Any], channel: str) -> dict[str, Any]:
    """The one message of ``channel`` (every FastStream channel has one)."""
    (reference,) = content["channels"][channel]["messages"].values()
    name = reference["$ref"].removeprefix("#/components/messages/")
    message: dict[str, Any] = content["components"]["messages"][name]
    return message


def _operations_on(content: dict[str, Any], channel: str) -> Iterator[dict[str, Any]]:
    target = ref("channels", channel)
    for operation in content["operations"].values():
        if operation["channel"] == target:
            yield operation


def _subscribers(broker: KafkaBroker) -> list[LogicSubscriber[Any]]:
    return [s for s in broker.subscribers if isinstance(s, LogicSubscriber)]


def _batch_records(content: dict[str, Any], broker: KafkaBroker) -> None:
    """A batch subscriber's records are the events its group's retry consumer takes one by one."""
    by_group = {subscriber.group_id: subscriber for subscriber in _subscribers(broker)}
    for batch in _subscribers(broker):
        if not isinstance(batch, BatchSubscriber):
            continue
        single = _channels_of(by_group[f"{batch.group_id}{RETRY_GROUP_SUFFIX}"])
        for address, channel in _channels_of(batch).items():
            record = _message(content, single[topics.retry_topic(address, str(batch.group_id))])
            _message(content, channel)["payload"] = record["payload"]
            for operation in _operations_on(content, channel):
                operation["description"] = (
                    f"Consumed in batches of up to {BATCH_RECORDS} records, offsets committed "
                    "once per batch; each record is one event, settled alone (a record that "
                    "fails is parked on the group's retry topic or dead-lettered)."
                )


def _retry_parking(content: dict[str, Any], broker: KafkaBroker) -> None:
    """Each retry topic a group reads, the service also writes: a send operation on its channel."""
    for subscriber in _subscribers(broker):
        if not str(subscriber.group_id).endswith(RETRY_GROUP_SUFFIX):
            continue
        for channel in _channels_of(subscriber).values():
            _message(content, channel)["headers"] = RETRY_HEADERS
            content["operations"][f"{channel}Park"] = {
                "action": "send",
                "channel": ref("channels", channel),
                "messages": [
                    ref("channels", channel, "messages", name)
                    for name in content["channels"][channel]["messages"]
                ],
                "description": "A record the service's consumer failed, parked here with a due "
                "time for another try by the group's retry consumer (plumbing/deadletter.py).",
            }


def _sealed_models() -> dict[str, type[SealsPhi]]:
    found: dict[str, type[SealsPhi]] = {}
    pending: list[type[SealsPhi]] = [SealsPhi]
    while pending:
        model = pending.pop()
        found[model.__name__] = model
        pending.extend(model.__subclasses__())
    return found


def _wire_shapes(content: dict[str, Any]) -> None:
    """Each model whose PHI is sealed on Kafka in its wire shape: ``sealed`` in place of its PHI."""
    schemas = content["components"]["schemas"]
    sealed = _sealed_models()
    for name in [name for name in schemas if name in sealed]:
        wire = sealed[name].model_json_schema(
            mode="serialization", ref_template="#/components/schemas/{model}"
        )
        for defined, schema in wire.pop("$defs", {}).items():
            schemas.setdefault(defined, schema)
        schemas[name] = wire


def _references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _references(value)
    elif isinstance(node, list):
        for item in node:
            yield from _references(item)


def _drop_unused_schemas(content: dict[str, Any]) -> None:
    """Schemas no message reaches any more (a model's PHI fields, once sealed; the payload FastStream
    made for a batch handler)."""
    schemas = content["components"]["schemas"]
    prefix = "#/components/schemas/"
    outside = {key: value for key, value in content.items() if key != "components"}
    outside["messages"] = content["components"]["messages"]
    pending = [r.removeprefix(prefix) for r in _references(outside) if r.startswith(prefix)]
    reached: set[str] = set()
    while pending:
        name = pending.pop()
        if name in reached or name not in schemas:
            continue
        reached.add(name)
        pending.extend(
            r.removeprefix(prefix) for r in _references(schemas[name]) if r.startswith(prefix)
        )
    for name in set(schemas) - reached:
        del schemas[name]
