"""The renewal service's delivery on the real broker: the outbox publishes a renewal's event once the
renewal is committed and never without it; the journey service's inbox makes a redelivered event
change and count nothing; its /metrics counts the funnel once per renewal per step."""

import json
from collections.abc import AsyncIterator, Callable
from typing import Any
from uuid import uuid4

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from sqlalchemy import func, select, text

from schemas import topics
from schemas.events import DraftUpdated, RenewalRequested
from schemas.vocabulary import Category, Ehr
from services.journey.adapters.ledger import RenewalRow, StepRow
from tests.e2e.conftest import MEDICATIONS_APP, Flow
from tests.e2e.test_renewal_journey import (
    TO_THE_DRAFT,
    UNKNOWN_TO_SM,
    VETERAN,
    about,
    journey,
    produce,
    reached,
    records_on,
    renewal_request,
)
from tests.support import bearer, eventually


async def counted(flow: Flow, step: str) -> float:
    """``rxsm_renewals_total{step=...}`` on the journey service's /metrics, over all its labels."""
    return float(sum(sample.value for sample in await renewal_samples(flow, step=step)))


async def renewal_samples(flow: Flow, **labels: str) -> list[Sample]:
    exposition = (await flow.journey.get("/metrics")).text
    return [
        sample
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == "rxsm_renewals_total"
        and all(sample.labels.get(k) == v for k, v in labels.items())
    ]


async def reached_in_ledger(flow: Flow, step: str) -> int:
    """How many renewals the journey has seen reach ``step`` (of those it has seen requested)."""
    async with flow.apps["journey"].state.sessions() as session:
        found = await session.scalar(
            select(func.count(func.distinct(StepRow.renewal_id))).where(
                StepRow.step == step, StepRow.renewal_id.in_(select(RenewalRow.id))
            )
        )
    return int(found or 0)


def counts_match_the_ledger(flow: Flow, *steps: str) -> Callable[[], Any]:
    """A probe: each step is counted once for every renewal the ledger saw reach it (a double count
    never matches again)."""

    async def probe() -> dict[str, float] | None:
        counts = {step: await counted(flow, step) for step in steps}
        for step, count in counts.items():
            if count != await reached_in_ledger(flow, step):
                return None
        return counts

    return probe


def prescription_of(event: dict[str, Any]) -> str | None:
    """The prescription id a ``renewal requested`` record carries sealed (None for a record of
    another run or schema)."""
    try:
        return RenewalRequested.model_validate(event).prescription.prescriptionId
    except ValueError:
        return None


@pytest.fixture
async def unraised(flow: Flow) -> AsyncIterator[httpx.AsyncClient]:
    """The Medications app's client that answers a server error with a 500, as a server would."""
    transport = httpx.ASGITransport(app=flow.apps["renewal"], raise_app_exceptions=False)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://renewal", headers=MEDICATIONS_APP
    ) as client:
        yield client


async def test_the_event_is_published_once_the_renewal_is_committed(flow: Flow) -> None:
    accepted = await flow.renewal.post("/v1/renewals", json=renewal_request())
    assert (accepted.status_code, accepted.json()["status"]) == (202, "accepted")
    renewal_id = accepted.json()["renewal_id"]

    requested = await eventually(reached(flow, renewal_id, "drafted", ("requested",)))
    [event] = await records_on(flow.bootstrap, topics.RENEWAL_REQUESTED, about(renewal_id))
    assert requested["steps"][0]["step"] == "requested"
    assert (
        event["cohort"] == requested["cohort"] == flow.apps["renewal"].state.flags.cohort(VETERAN)
    )
    assert "veteran_id" not in event and "prescription" not in event, "PHI travels sealed"
    assert RenewalRequested.model_validate(event).veteran_id == VETERAN


async def test_a_failed_transaction_saves_and_publishes_nothing(
    flow: Flow, unraised: httpx.AsyncClient
) -> None:
    """The database refuses the renewal's row: the request fails with a 500, no renewal is saved and
    its event never reaches Kafka, though the relay goes on publishing the renewals after it."""
    doomed = renewal_request()
    prescription_id = doomed["prescription"]["prescriptionId"]
    key = str(uuid4())
    sessions = flow.apps["renewal"].state.sessions
    async with sessions.begin() as session:
        await session.execute(
            text(
                "CREATE TRIGGER refuse_doomed BEFORE INSERT ON renewals "
                f"WHEN NEW.prescription_id = '{prescription_id}' "
                "BEGIN SELECT RAISE(ABORT, 'the database refused the row'); END"
            )
        )
    try:
        failed = await unraised.post("/v1/renewals", json=doomed, headers={"Idempotency-Key": key})
    finally:
        async with sessions.begin() as session:
            await session.execute(text("DROP TRIGGER refuse_doomed"))
    assert failed.status_code == 500

    after = await flow.renewal.post("/v1/renewals", json=renewal_request())
    await eventually(reached(flow, after.json()["renewal_id"], "drafted"))
    published = await records_on(flow.bootstrap, topics.RENEWAL_REQUESTED, lambda e: True)
    prescriptions = {prescription_of(e) for e in published}
    assert after.json()["renewal_id"] in {e.get("renewal_id") for e in published}
    assert prescription_id not in prescriptions
    missing = await flow.renewal.get(f"/v1/renewals/by-idempotency-key/{key}")
    assert missing.status_code == 404


async def test_a_redelivered_event_changes_nothing_and_counts_nothing_twice(flow: Flow) -> None:
    accepted = await flow.renewal.post("/v1/renewals", json=renewal_request())
    renewal_id = accepted.json()["renewal_id"]
    before = await eventually(reached(flow, renewal_id, "drafted", TO_THE_DRAFT))
    [created] = await records_on(flow.bootstrap, topics.DRAFTS, about(renewal_id))

    await produce(flow.bootstrap, topics.DRAFTS, json.dumps(created).encode(), renewal_id.encode())
    edit = DraftUpdated(
        renewal_id=renewal_id,
        draft_id=created["draft_id"],
        veteran_id=VETERAN,
        ehr=Ehr.VISTA,
        category=Category.MEDICATIONS,
        recipient_id=created["recipient_id"],
        changed=["body"],
    )
    await produce(flow.bootstrap, topics.DRAFTS, edit.model_dump_json().encode(), edit.key)

    async def edited() -> dict[str, Any] | None:
        found = await journey(flow, renewal_id)
        return found if found["steps"][-1]["step"] == "draft_updated" else None

    after = await eventually(edited)
    assert after["steps"][:-1] == before["steps"], "the redelivered draft.created added nothing"
    assert [s["step"] for s in after["steps"]].count("draft_created") == 1
    assert after["status"] == before["status"] == "drafted"
    await eventually(counts_match_the_ledger(flow, "draft_created", "draft_updated"))


async def test_the_funnel_counts_each_step_once_per_renewal(flow: Flow) -> None:
    cohort = flow.apps["renewal"].state.flags.cohort(VETERAN)
    accepted = await flow.renewal.post("/v1/renewals", json=renewal_request())
    renewal_id = accepted.json()["renewal_id"]
    no_team = await flow.renewal.post("/v1/renewals", json=renewal_request(UNKNOWN_TO_SM))
    await eventually(reached(flow, renewal_id, "drafted"))
    draft = await flow.messaging.get(f"/v1/renewals/{renewal_id}/draft", headers=bearer(VETERAN))
    sent = await flow.messaging.post(
        f"/v1/drafts/{draft.json()['id']}/send", headers=bearer(VETERAN)
    )
    assert sent.status_code == 200, sent.text
    await eventually(reached(flow, renewal_id, "sent"))
    await eventually(reached(flow, no_team.json()["renewal_id"], "care_team_unavailable"))

    funnel = ("requested", "care_team_resolved", "draft_created", "message_sent")
    counts = await eventually(counts_match_the_ledger(flow, *funnel, "care_team_unavailable"))

    assert all(counts[step] >= 1 for step in funnel)
    owners = {"requested": "meds", "care_team_resolved": "sm", "draft_created": "sm"}
    for step, tool in {**owners, "message_sent": "sm"}.items():
        labels = {"step": step, "outcome": "success", "tool": tool, "ehr": "vista"}
        assert await renewal_samples(flow, **labels, cohort=cohort), step
    [failure] = await renewal_samples(
        flow, step="care_team_unavailable", reason="no_associations", ehr="vista", cohort=cohort
    )
    assert (failure.labels["outcome"], failure.labels["tool"]) == ("failure", "sm")
