"""The renewal flow's feature flag on the running services: a live change is picked up within
seconds, refuses new renewals (403 ``renewal_flow_off``, the Medications app shows its fallback) per
Veteran, is recorded for requests on Kafka, and lets renewals accepted before it finish."""

from collections.abc import AsyncIterator, Callable
from typing import Any
from uuid import uuid4

import pytest

from plumbing.flags import RENEWAL_FLOW
from schemas import topics
from schemas.records import RenewalRequest
from tests.e2e.conftest import Flow
from tests.e2e.test_renewal_journey import (
    UNKNOWN_TO_SM,
    VETERAN,
    about,
    produce,
    reached,
    records_on,
    renewal_request,
)
from tests.support import bearer, eventually

PICKED_UP_WITHIN = 5.0
"""Seconds a change of the flag file may take to reach the running services."""


def renewal_flow(flow: Flow, veteran_id: str, on: bool) -> Callable[[], Any]:
    """A probe: True once the running renewal service sees the flow ``on`` (or off) for the Veteran."""

    async def probe() -> bool | None:
        return (
            True if flow.apps["renewal"].state.flags.is_on(RENEWAL_FLOW, veteran_id) is on else None
        )

    return probe


@pytest.fixture
async def rollout(flow: Flow) -> AsyncIterator[Flow]:
    """The flow, with the renewal flow on for everyone again (as the other tests expect) once the
    test is over."""
    before = flow.flags.read()[RENEWAL_FLOW]
    assert (before.percentage, before.killed) == (100, False)
    yield flow
    flow.flags.write(RENEWAL_FLOW, before)
    for veteran_id in (VETERAN, UNKNOWN_TO_SM):
        await eventually(renewal_flow(flow, veteran_id, True), within=PICKED_UP_WITHIN)


async def test_the_kill_switch_refuses_new_renewals_and_accepted_ones_finish(rollout: Flow) -> None:
    flow = rollout
    body, key = renewal_request(), {"Idempotency-Key": str(uuid4())}
    accepted = await flow.renewal.post("/v1/renewals", json=body, headers=key)
    assert accepted.status_code == 202, accepted.text
    renewal_id = accepted.json()["renewal_id"]

    flow.flags.change(RENEWAL_FLOW, by="sre@example.org", killed=True)
    await eventually(renewal_flow(flow, VETERAN, False), within=PICKED_UP_WITHIN)

    refused = await flow.renewal.post("/v1/renewals", json=renewal_request())
    assert refused.status_code == 403
    assert refused.json()["code"] == "renewal_flow_off"
    assert refused.json()["message"].endswith(".")
    found = await eventually(reached(flow, refused.json()["renewal_id"], "refused"))
    assert found["failure"] == {"tool": "meds", "step": "refused", "error_code": "renewal_flow_off"}

    repeat = await flow.renewal.post("/v1/renewals", json=body, headers=key)
    assert (repeat.status_code, repeat.json()["renewal_id"]) == (202, renewal_id)
    await eventually(reached(flow, renewal_id, "drafted"))
    draft = await flow.messaging.get(f"/v1/renewals/{renewal_id}/draft", headers=bearer(VETERAN))
    sent = await flow.messaging.post(
        f"/v1/drafts/{draft.json()['id']}/send", headers=bearer(VETERAN)
    )
    assert sent.status_code == 200, sent.text
    done = await eventually(reached(flow, renewal_id, "sent"))
    assert done["failure"] is None


async def test_the_flag_is_evaluated_per_veteran(rollout: Flow) -> None:
    flow = rollout
    flow.flags.change(RENEWAL_FLOW, by="sre@example.org", percentage=0, allow=(VETERAN,))
    await eventually(renewal_flow(flow, UNKNOWN_TO_SM, False), within=PICKED_UP_WITHIN)

    allowed = await flow.renewal.post("/v1/renewals", json=renewal_request(VETERAN))
    other = await flow.renewal.post("/v1/renewals", json=renewal_request(UNKNOWN_TO_SM))

    assert allowed.status_code == 202, allowed.text
    assert (other.status_code, other.json()["code"]) == (403, "renewal_flow_off")


async def test_a_request_on_kafka_with_the_flow_off_is_recorded_as_refused(rollout: Flow) -> None:
    flow = rollout
    flow.flags.change(RENEWAL_FLOW, by="sre@example.org", killed=True)
    await eventually(renewal_flow(flow, VETERAN, False), within=PICKED_UP_WITHIN)
    key, body = str(uuid4()), renewal_request()
    await produce(
        flow.bootstrap,
        topics.RENEWAL_REQUESTS,
        RenewalRequest.sealed_record(body),
        key=key.encode(),
        Idempotency_Key=key,
    )

    async def recorded() -> dict[str, Any] | None:
        response = await flow.journey.get(f"/v1/renewals/by-idempotency-key/{key}")
        return response.json() if response.status_code == 200 else None

    found = await eventually(recorded)
    assert (found["status"], found["source"]) == ("refused", "kafka")
    assert found["failure"] == {"tool": "meds", "step": "refused", "error_code": "renewal_flow_off"}
    renewal_id = found["renewal_id"]
    assert await records_on(flow.bootstrap, topics.RENEWAL_REQUESTED, about(renewal_id)) == []
    intake = await flow.renewal.get(f"/v1/renewals/by-idempotency-key/{key}")
    assert (intake.json()["renewal_id"], intake.json()["status"]) == (renewal_id, "refused")
    counted = (await flow.journey.get("/metrics")).text
    assert any(
        line.startswith("rxsm_renewals_total")
        and 'step="refused"' in line
        and 'reason="renewal_flow_off"' in line
        for line in counted.splitlines()
    )
