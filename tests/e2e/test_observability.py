"""What an SRE sees of real flows on the real broker: no PHI in any exported span or log line; every
service's /metrics counting the release plan's series; and `rxsm journey` / `rxsm failures` naming the
tool, step and error of a failed renewal from the running renewal service."""

import asyncio
import json
import os
import sys
from collections.abc import Callable
from typing import Any
from uuid import uuid4

import pytest
from aiokafka import AIOKafkaProducer
from opentelemetry.sdk.trace import ReadableSpan
from prometheus_client.parser import text_string_to_metric_families

from schemas import topics
from tests.e2e.conftest import Flow
from tests.e2e.test_renewal_journey import renewal_request
from tests.e2e.test_traces import (
    MIXED,
    UNKNOWN_TO_SM,
    VISTA_ONLY,
    failing_oracle_health,
    oracle_health_draft,
)
from tests.support import bearer, eventually, served_on_a_port

pytestmark = pytest.mark.kafka

CHEYENNE_PRIMARY = 1013155
PROVIDER = {"providerFirstName": "Evangeline", "providerLastName": "Quackenbush"}
SIG = "DISSOLVE ONE TABLET UNDER THE TONGUE AT MOONRISE"
REASON = "Zymotic tremor of the left thumb"
BODY = "Please renew it. My SSN is 123-45-6789 and I was born 04/17/1961."
OTHER_BODY = "Second question: SSN 987654321, date of birth 1961-04-17."
PHI = (
    "Evangeline",
    "Quackenbush",
    "MOONRISE",
    "Zymotic",
    "123-45-6789",
    "987654321",
    "04/17/1961",
    "1961-04-17",
    "Please renew it",
    "Second question",
    "Provider who prescribed it",
)
"""What the flows below carry that must never leave a service in a span or a log line."""


async def draft_of(flow: Flow, renewal_id: str, veteran: str = VISTA_ONLY) -> dict[str, Any]:
    async def found() -> dict[str, Any] | None:
        response = await flow.messaging.get(
            f"/v1/renewals/{renewal_id}/draft", headers=bearer(veteran)
        )
        return response.json() if response.status_code == 200 else None

    return await eventually(found)


async def flows_carrying_phi(flow: Flow) -> None:
    """A renewal whose prescription names its provider, instructions and reason; its prefilled body
    edited to hold an SSN and a date of birth, then sent; a new message with both, refused once for a
    subject too long, then deleted; and a malformed renewal request holding an SSN."""
    request = renewal_request(sig=SIG, reason=REASON, **PROVIDER)
    accepted = await flow.renewal.post("/v1/renewals", json=request)
    assert accepted.status_code == 202, accepted.text
    draft = await draft_of(flow, accepted.json()["renewal_id"])
    assert "Quackenbush" in draft["body"] and SIG in draft["body"], "the flow carried the PHI"
    veteran = bearer(VISTA_ONLY)
    edited = await flow.messaging.put(
        f"/v1/drafts/{draft['id']}", json={"body": draft["body"] + "\n" + BODY}, headers=veteran
    )
    assert edited.status_code == 200, edited.text
    sent = await flow.messaging.post(f"/v1/drafts/{draft['id']}/send", headers=veteran)
    assert sent.status_code == 200, sent.text

    created = await flow.messaging.post(
        "/v1/drafts",
        json={
            "recipient_id": CHEYENNE_PRIMARY,
            "team_selection": "recent",
            "category": "OTHER",
            "subject": "A question",
            "body": OTHER_BODY,
            "platform": "mobile",
        },
        headers=veteran,
    )
    assert created.status_code == 201, created.text
    too_long = await flow.messaging.put(
        f"/v1/drafts/{created.json()['id']}",
        json={"subject": f"{OTHER_BODY} {BODY}"},
        headers=veteran,
    )
    assert too_long.status_code == 422
    deleted = await flow.messaging.delete(f"/v1/drafts/{created.json()['id']}", headers=veteran)
    assert deleted.status_code == 204

    malformed = await flow.renewal.post(
        "/v1/renewals", json={**request, "veteranId": "123-45-6789 born 04/17/1961"}
    )
    assert malformed.status_code == 422


def span_texts(span: ReadableSpan) -> list[str]:
    """Every text an exporter sends of ``span``: name, status, attributes and event attributes."""
    texts = [span.name, span.status.description or ""]
    attribute_sets = [span.attributes or {}, *(event.attributes or {} for event in span.events)]
    for attributes in attribute_sets:
        for key, value in attributes.items():
            values = value if isinstance(value, tuple | list) else (value,)
            texts.extend(f"{key}={item!s}" for item in values)
    return texts


async def test_no_phi_reaches_an_exported_span_or_a_log_line(flow: Flow) -> None:
    await flows_carrying_phi(flow)
    await asyncio.sleep(1.0)

    spans = flow.spans.get_finished_spans()
    logs = flow.log_stream.getvalue()

    assert spans and logs
    leaks = [
        (span.name, text)
        for span in spans
        for text in span_texts(span)
        if any(value in text for value in PHI)
    ]
    assert leaks == []
    assert [value for value in PHI if value in logs] == []
    assert all(isinstance(line, dict) for line in flow.log_lines()), "every log line is JSON"


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def samples(flow: Flow, service: str) -> Samples:
    response = await getattr(flow, service).get("/metrics")
    assert response.status_code == 200
    found: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def total(found: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(value for (sample, got), value in found.items() if sample == name and wanted <= got)


def label_values(found: Samples, name: str, label: str) -> set[str]:
    return {dict(got)[label] for (sample, got) in found if sample == name and label in dict(got)}


async def dead_letter_on_care_teams(flow: Flow) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=flow.bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topics.CARE_TEAMS, b"{not json", key=str(uuid4()).encode())
    finally:
        await producer.stop()


async def test_every_service_counts_the_release_plans_series_after_a_flow(flow: Flow) -> None:
    services = ("renewal", "careteam", "messaging", "journey")
    before = {service: await samples(flow, service) for service in services}

    accepted = await flow.renewal.post("/v1/renewals", json=renewal_request())
    draft = await draft_of(flow, accepted.json()["renewal_id"])
    veteran = bearer(VISTA_ONLY)
    await flow.messaging.put(f"/v1/drafts/{draft['id']}", json={"body": "Thanks"}, headers=veteran)
    sent = await flow.messaging.post(f"/v1/drafts/{draft['id']}/send", headers=veteran)
    assert sent.status_code == 200, sent.text
    created = await flow.messaging.post(
        "/v1/drafts",
        json={
            "recipient_id": CHEYENNE_PRIMARY,
            "team_selection": "recent",
            "category": "OTHER",
            "subject": "A question",
            "body": "Hello",
        },
        headers=veteran,
    )
    await flow.messaging.delete(f"/v1/drafts/{created.json()['id']}", headers=veteran)
    refused = await flow.renewal.post(
        "/v1/renewals", json=renewal_request(dispStatus="Discontinued")
    )
    assert refused.status_code == 422
    await flow.renewal.post("/v1/renewals", json=renewal_request(UNKNOWN_TO_SM))
    _, _, oracle_health = await oracle_health_draft(flow)
    async with failing_oracle_health(flow):
        failed = await flow.messaging.post(
            f"/v1/drafts/{oracle_health['id']}/send", headers=bearer(MIXED)
        )
    assert failed.status_code == 400
    await dead_letter_on_care_teams(flow)

    async def counted() -> dict[str, Samples] | None:
        after = {service: await samples(flow, service) for service in services}
        lagging = all(
            label_values(after[service], "rxsm_consumer_lag", "topic") for service in services
        )
        dead = min(
            total(after[service], "rxsm_dead_letters_total", topic=topics.CARE_TEAMS)
            - total(before[service], "rxsm_dead_letters_total", topic=topics.CARE_TEAMS)
            for service in ("messaging", "journey")
        )
        unavailable = total(
            after["journey"], "rxsm_renewals_total", step="care_team_unavailable", tool="sm"
        )
        sent_steps = total(after["journey"], "rxsm_renewals_total", step="message_sent")
        ready = (
            lagging
            and dead >= 1
            and unavailable
            > total(before["journey"], "rxsm_renewals_total", step="care_team_unavailable")
            and sent_steps > total(before["journey"], "rxsm_renewals_total", step="message_sent")
        )
        return after if ready else None

    after = await eventually(counted, within=30.0, every=0.5)

    def grew(service: str, name: str, **labels: str) -> float:
        return total(after[service], name, **labels) - total(before[service], name, **labels)

    messaging = "messaging"
    assert grew(messaging, "rxsm_drafts_created_total", status="success", ehr="vista") >= 1
    assert grew(messaging, "rxsm_drafts_created_total", status="201") >= 1
    assert grew(messaging, "rxsm_drafts_updated_total", status="200") >= 1
    assert grew(messaging, "rxsm_drafts_deleted_total", status="204") >= 1
    assert grew(messaging, "rxsm_messages_sent_total", status="200", ehr="vista") >= 1
    assert grew(messaging, "rxsm_messages_sent_total", status="400", ehr="oracle_health") >= 1
    assert grew(messaging, "rxsm_draft_duration_seconds_count") >= 3
    assert grew(messaging, "rxsm_send_duration_seconds_count") >= 2
    assert label_values(after[messaging], "rxsm_send_duration_seconds_bucket", "le")
    assert label_values(after[messaging], "rxsm_messages_sent_total", "cohort") <= {
        "new",
        "base",
        "unknown",
    }
    assert grew(messaging, "rxsm_dead_letters_total", tool="sm", topic=topics.CARE_TEAMS) >= 1

    assert (
        grew("careteam", "rxsm_renewals_total", step="care_team_resolved", outcome="success") >= 1
    )
    assert grew("careteam", "rxsm_care_system_picker_shown_total", kind="auto") >= 1

    for step, tool, outcome in (
        ("requested", "meds", "success"),
        ("refused", "meds", "failure"),
        ("care_team_unavailable", "sm", "failure"),
        ("draft_created", "sm", "success"),
        ("message_send_failed", "sm", "failure"),
        ("message_sent", "sm", "success"),
    ):
        assert grew("journey", "rxsm_renewals_total", step=step, tool=tool, outcome=outcome) >= 1, (
            step
        )
    for ehr in ("vista", "oracle_health"):  # counted from zero: the series exist from start
        assert grew("journey", "rxsm_renewals_total", ehr=ehr) >= 1, ehr
    assert grew("journey", "rxsm_dead_letters_total", tool="journey", topic=topics.CARE_TEAMS) >= 1
    assert label_values(after["journey"], "rxsm_dead_letters_total", "tool") <= {"journey"}, (
        "what the journey service refuses is its own, never meds' or sm's"
    )
    assert grew("renewal", "rxsm_renewals_total") == 0, "meds' intake counts only its stalls"

    for service in services:
        assert label_values(after[service], "rxsm_consumer_lag", "consumer_group"), service


async def rxsm(journey_url: str, *args: str) -> str:
    """Run the installed command line as an SRE does, in a process of its own."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "rxsm",
        *args,
        env={**os.environ, "RXSM_JOURNEY_URL": journey_url, "COLUMNS": "200"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out.decode()


def reached(flow: Flow, renewal_id: str, status: str) -> Callable[[], Any]:
    async def probe() -> bool | None:
        response = await flow.journey.get(f"/v1/renewals/{renewal_id}")
        return True if response.status_code == 200 and response.json()["status"] == status else None

    return probe


async def test_rxsm_journey_names_the_tool_step_and_error_of_a_failed_renewal(flow: Flow) -> None:
    accepted = await flow.renewal.post("/v1/renewals", json=renewal_request(UNKNOWN_TO_SM))
    renewal_id, trace_id = accepted.json()["renewal_id"], accepted.json()["trace_id"]
    await eventually(reached(flow, renewal_id, "care_team_unavailable"))
    sm98_renewal, _, draft = await oracle_health_draft(flow)
    async with failing_oracle_health(flow):
        await flow.messaging.post(f"/v1/drafts/{draft['id']}/send", headers=bearer(MIXED))
    await eventually(reached(flow, sm98_renewal, "send_failed"))

    async with served_on_a_port(flow.apps["journey"]) as journey_url:
        printed = await rxsm(journey_url, "journey", renewal_id)
        as_json = json.loads(await rxsm(journey_url, "journey", renewal_id, "--json"))
        send_failed = await rxsm(journey_url, "journey", sm98_renewal)
        grouped = json.loads(await rxsm(journey_url, "failures", "--since", "1h", "--json"))

    assert f"Renewal {renewal_id}: care_team_unavailable (closed)" in printed
    steps = [line.split() for line in printed.splitlines() if line.startswith("│")]
    assert [row[1:4:2] for row in steps] == [
        ["requested", "meds"],
        ["care_team_unavailable", "sm"],
    ]
    assert "no_associations" in steps[1]
    assert "FAILED in tool sm at step care_team_unavailable, error no_associations" in printed
    assert f"trace id: {trace_id}" in printed
    assert as_json["failure"] == {
        "tool": "sm",
        "step": "care_team_unavailable",
        "error_code": "no_associations",
    }
    assert "FAILED in tool sm at step message_send_failed, error SM98" in send_failed
    assert "send_failed (open)" in send_failed

    groups = {(g["tool"], g["step"], g["error"]): g["renewal_ids"] for g in grouped}
    assert renewal_id in groups[("sm", "care_team_unavailable", "no_associations")]
    assert sm98_renewal in groups[("sm", "message_send_failed", "SM98")]
