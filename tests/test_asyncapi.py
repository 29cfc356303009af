"""`make docs`: each service's AsyncAPI document names what it consumes and what it publishes."""

from pathlib import Path

from typer.testing import CliRunner

from rxsm.asyncapi import PUBLISHES, document
from rxsm.cli import app
from schemas import topics

CONSUMES = {
    "renewal": [topics.RENEWAL_REQUESTS, topics.CARE_TEAMS, topics.DRAFTS, topics.MESSAGES],
    "careteam": [topics.RENEWAL_REQUESTED],
    "messaging": [topics.CARE_TEAMS],
}


def channel_addresses(name: str) -> set[str]:
    return {channel["address"] for channel in document(name)["channels"].values()}


def test_each_document_has_the_topics_its_service_consumes_and_publishes() -> None:
    for name, consumed in CONSUMES.items():
        addresses = channel_addresses(name)
        published = [topic for topic, _, _ in PUBLISHES[name]]
        assert set(consumed) | set(published) <= addresses, name


def test_the_published_events_carry_their_json_schema() -> None:
    doc = document("messaging")
    schemas = doc["components"]["schemas"]
    assert {"MessageSent", "MessageSendFailed", "DraftCreated"} <= set(schemas)


def test_make_docs_writes_one_file_per_service(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["asyncapi", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "careteam.json",
        "messaging.json",
        "renewal.json",
    ]
