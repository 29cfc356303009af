"""`rxsm journey` and `rxsm failures`: where a renewal is and whose tool failed it, read from the
journey service (answers built with the service's own response models), and, for a renewal the journey
has not seen, from the renewal service's intake."""

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import httpx
import pytest
from typer.testing import CliRunner, Result

from rxsm import cli
from rxsm.journeys import LedgerClient, RenewalSummary, group_failures
from schemas.vocabulary import Cohort, Ehr, Tool
from services.journey.domain import Status, Step
from services.journey.entrypoints import (
    Failure,
    Journey,
    JourneyStep,
    RenewalList,
    Stalled,
)
from services.renewal import entrypoints as renewal
from services.renewal.domain import IntakeStatus

REQUESTED_AT = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def at(seconds: float) -> datetime:
    return REQUESTED_AT + timedelta(seconds=seconds)


def unavailable_journey(renewal_id: UUID) -> Journey:
    return Journey(
        renewal_id=renewal_id,
        status=Status.CARE_TEAM_UNAVAILABLE,
        ehr=Ehr.VISTA,
        cohort=Cohort.NEW,
        trace_id=TRACE_ID,
        requested_at=REQUESTED_AT,
        updated_at=at(0.4),
        failure=Failure(
            tool=Tool.SM, step=Step.CARE_TEAM_UNAVAILABLE, error_code="no_associations"
        ),
        stalled=None,
        open=False,
        source="http",
        steps=[
            JourneyStep(step=Step.REQUESTED, tool=Tool.MEDS, at=at(0.1)),
            JourneyStep(
                step=Step.CARE_TEAM_UNAVAILABLE,
                tool=Tool.SM,
                at=at(0.4),
                error_code="no_associations",
            ),
        ],
    )


def summary(
    failure: tuple[Tool, Step, str] | None = None, stalled: tuple[Step, Tool] | None = None
) -> RenewalSummary:
    status = Status.STALLED if stalled else Status.SEND_FAILED
    return RenewalSummary.model_validate(
        {
            "renewal_id": str(uuid4()),
            "status": status,
            "ehr": "oracle_health",
            "cohort": "new",
            "trace_id": TRACE_ID,
            "requested_at": REQUESTED_AT.isoformat(),
            "updated_at": at(60).isoformat(),
            "failure": Failure(tool=failure[0], step=failure[1], error_code=failure[2]).model_dump()
            if failure
            else None,
            "stalled": Stalled(
                waiting_for=stalled[0], tool=stalled[1], since=at(1), detected_at=at(301)
            ).model_dump()
            if stalled
            else None,
        }
    )


SEND_FAILED_SM98 = (Tool.SM, Step.MESSAGE_SEND_FAILED, "SM98")
REFUSED_REFILLABLE = (Tool.MEDS, Step.REFUSED, "refillable")


def test_failures_are_grouped_by_tool_step_and_error_largest_first() -> None:
    renewals = [
        summary(SEND_FAILED_SM98),
        summary(REFUSED_REFILLABLE),
        summary(SEND_FAILED_SM98),
        summary(stalled=(Step.CARE_TEAM_RESOLVED, Tool.SM)),
        summary(stalled=(Step.DRAFT_CREATED, Tool.SM)),
        summary(stalled=(Step.CARE_TEAM_RESOLVED, Tool.SM)),
        summary(SEND_FAILED_SM98),
    ]

    groups = group_failures(renewals)

    assert [(g.tool, g.step, g.error, g.count) for g in groups] == [
        ("sm", "message_send_failed", "SM98", 3),
        ("sm", "care_team_resolved", "stalled", 2),
        ("meds", "refused", "refillable", 1),
        ("sm", "draft_created", "stalled", 1),
    ]
    assert groups[0].renewal_ids == [
        renewals[0].renewal_id,
        renewals[2].renewal_id,
        renewals[6].renewal_id,
    ]


Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture
def serve_ledger(monkeypatch: pytest.MonkeyPatch) -> Callable[[Handler], list[httpx.Request]]:
    """The CLI's services (journey, renewal) answer with ``handler``; returns the requests it
    made."""

    def serve(handler: Handler) -> list[httpx.Request]:
        seen: list[httpx.Request] = []

        def recorded(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return handler(request)

        transport = httpx.MockTransport(recorded)
        monkeypatch.setattr(
            cli,
            "ledger",
            lambda url, service="journey": LedgerClient(url, transport=transport, service=service),
        )
        return seen

    return serve


def rxsm(*args: str) -> Result:
    env = {
        "RXSM_JOURNEY_URL": "http://journey.test",
        "RXSM_RENEWAL_URL": "http://renewal.test",
        "COLUMNS": "160",
    }
    return CliRunner().invoke(cli.app, list(args), env=env)


def test_journey_prints_the_steps_owners_failing_tool_error_and_trace(
    serve_ledger: Callable[[Handler], list[httpx.Request]],
) -> None:
    renewal_id = uuid4()
    answer = unavailable_journey(renewal_id).model_dump(mode="json")
    requests = serve_ledger(lambda _: httpx.Response(200, json=answer))

    result = rxsm("journey", str(renewal_id))

    assert result.exit_code == 0, result.output
    assert [str(request.url) for request in requests] == [
        f"http://journey.test/v1/renewals/{renewal_id}"
    ]
    lines = result.output.splitlines()
    assert f"Renewal {renewal_id}: care_team_unavailable (closed)" in lines[0]
    assert any("requested" in line and "meds" in line and "+0.1s" in line for line in lines)
    assert any(
        "care_team_unavailable" in line and " sm " in line and "no_associations" in line
        for line in lines
    )
    assert "FAILED in tool sm at step care_team_unavailable, error no_associations" in result.output
    assert f"trace id: {TRACE_ID}" in result.output


def test_journey_says_which_tool_a_stalled_renewal_waits_on(
    serve_ledger: Callable[[Handler], list[httpx.Request]],
) -> None:
    renewal_id = uuid4()
    stalled = unavailable_journey(renewal_id).model_copy(
        update={
            "status": Status.STALLED,
            "failure": None,
            "open": True,
            "steps": [JourneyStep(step=Step.REQUESTED, tool=Tool.MEDS, at=at(0.1))],
            "stalled": Stalled(
                waiting_for=Step.CARE_TEAM_RESOLVED,
                tool=Tool.SM,
                since=at(0.1),
                detected_at=at(301),
            ),
        }
    )
    serve_ledger(lambda _: httpx.Response(200, json=stalled.model_dump(mode="json")))

    result = rxsm("journey", str(renewal_id))

    assert result.exit_code == 0, result.output
    assert (
        "STALLED waiting for care_team_resolved (tool sm) since 2026-05-01 12:00:00 UTC"
        in result.output
    )
    assert "FAILED" not in result.output


def test_journey_json_is_the_ledger_answer(
    serve_ledger: Callable[[Handler], list[httpx.Request]],
) -> None:
    renewal_id = uuid4()
    answer = unavailable_journey(renewal_id).model_dump(mode="json")
    serve_ledger(lambda _: httpx.Response(200, json=answer))

    result = rxsm("journey", str(renewal_id), "--json")

    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    assert printed["failure"] == {
        "tool": "sm",
        "step": "care_team_unavailable",
        "error_code": "no_associations",
    }
    assert [(step["step"], step["tool"]) for step in printed["steps"]] == [
        ("requested", "meds"),
        ("care_team_unavailable", "sm"),
    ]
    assert printed["trace_id"] == TRACE_ID


def test_an_unknown_renewal_and_a_silent_ledger_are_clear_errors(
    serve_ledger: Callable[[Handler], list[httpx.Request]],
) -> None:
    renewal_id = uuid4()
    requests = serve_ledger(
        lambda _: httpx.Response(
            404, json={"code": "renewal_not_found", "message": "No renewal has this id; check it."}
        )
    )
    unknown = rxsm("journey", str(renewal_id))
    assert unknown.exit_code != 0
    assert "neither the journey nor the renewal service has renewal" in unknown.output
    assert [request.url.host for request in requests] == ["journey.test", "renewal.test"]

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    serve_ledger(refuse)
    down = rxsm("journey", str(renewal_id))
    assert down.exit_code != 0
    assert "the journey service at http://journey.test did not answer" in down.output


def test_a_renewal_whose_request_never_reached_kafka_is_shown_stalled_on_meds_by_the_intake(
    serve_ledger: Callable[[Handler], list[httpx.Request]],
) -> None:
    """The journey starts at meds' event on Kafka: for a renewal it has not seen, the renewal
    service's intake says it was accepted and is stalled on meds."""
    renewal_id = uuid4()
    intake = renewal.RenewalIntake(
        renewal_id=renewal_id,
        status=IntakeStatus.STALLED,
        open=True,
        source="http",
        ehr=Ehr.VISTA,
        cohort=Cohort.BASE,
        trace_id=TRACE_ID,
        requested_at=REQUESTED_AT,
        updated_at=at(301),
        failure=None,
        stalled=renewal.Stalled(
            waiting_for="requested", tool=Tool.MEDS, since=REQUESTED_AT, detected_at=at(301)
        ),
    )

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.host == "journey.test":
            return httpx.Response(404, json={"code": "renewal_not_found", "message": "None."})
        return httpx.Response(200, json=intake.model_dump(mode="json"))

    requests = serve_ledger(answer)
    result = rxsm("journey", str(renewal_id))

    assert result.exit_code == 0, result.output
    assert [str(request.url) for request in requests] == [
        f"http://journey.test/v1/renewals/{renewal_id}",
        f"http://renewal.test/v1/renewals/{renewal_id}",
    ]
    assert "not in the journey; the renewal service's intake says stalled" in result.output
    assert (
        "STALLED waiting for requested (tool meds) since 2026-05-01 12:00:00 UTC" in result.output
    )
    as_json = json.loads(rxsm("journey", str(renewal_id), "--json").output)
    assert as_json["journey"] is None
    assert as_json["intake"]["stalled"]["tool"] == "meds"


def test_failures_asks_for_failed_and_stalled_renewals_since_then_and_groups_them(
    serve_ledger: Callable[[Handler], list[httpx.Request]],
) -> None:
    renewals = [summary(SEND_FAILED_SM98), summary(SEND_FAILED_SM98), summary(REFUSED_REFILLABLE)]
    listed = RenewalList.model_validate({"renewals": [r.model_dump(mode="json") for r in renewals]})
    requests = serve_ledger(lambda _: httpx.Response(200, json=listed.model_dump(mode="json")))

    before = datetime.now(UTC)
    result = rxsm("failures", "--since", "2h", "--json")

    assert result.exit_code == 0, result.output
    [request] = requests
    assert request.url.path == "/v1/renewals"
    assert request.url.params["status"] == "failed,stalled"
    since = datetime.fromisoformat(request.url.params["since"])
    assert (
        before - timedelta(hours=2, seconds=5)
        < since
        <= before - timedelta(hours=2) + timedelta(seconds=5)
    )
    assert json.loads(result.output) == [
        {
            "tool": "sm",
            "step": "message_send_failed",
            "error": "SM98",
            "count": 2,
            "renewal_ids": [str(renewals[0].renewal_id), str(renewals[1].renewal_id)],
        },
        {
            "tool": "meds",
            "step": "refused",
            "error": "refillable",
            "count": 1,
            "renewal_ids": [str(renewals[2].renewal_id)],
        },
    ]

    table = rxsm("failures")
    assert table.exit_code == 0, table.output
    assert any(
        " sm " in line and "message_send_failed" in line and "SM98" in line and " 2 " in line
        for line in table.output.splitlines()
    )
    assert "3 failed or stalled renewal(s) since" in table.output


@pytest.mark.parametrize("since", ["1 hour", "h", "-1h", "1y"])
def test_since_must_be_a_number_and_a_unit(since: str) -> None:
    result = rxsm("failures", "--since", since)

    assert result.exit_code != 0
    assert "give a number and a unit" in result.output
