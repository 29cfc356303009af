"""The benchmark's own accounting: joining a renewal's events, and summarising a profile."""

import pytest

from bench.profiling import summarise
from bench.rxsm_bench import Journeys


def requested(renewal: str, prescription: str) -> dict[str, object]:
    return {
        "event_type": "renewal.requested",
        "renewal_id": renewal,
        "prescription": {"prescriptionId": prescription},
    }


def drafted(renewal: str, draft: str) -> dict[str, object]:
    return {"event_type": "draft.created", "renewal_id": renewal, "draft_id": draft}


def test_a_draft_seen_before_its_request_counts_once_the_request_arrives() -> None:
    journeys = Journeys(fed_at={"rx-1": 100.0})
    sent_drafts: list[str] = []
    journeys.on_drafted = sent_drafts.append

    assert journeys.on_event("drafts", drafted("r-1", "d-1"), 100.5) == []
    assert journeys.on_event("requested", requested("r-1", "rx-1"), 100.2) == ["drafted"]

    assert journeys.drafts == {"r-1": "d-1"}
    assert sent_drafts == ["d-1"]
    assert journeys.to_draft.samples == [pytest.approx(500.0)]
    assert journeys.stages["renewal.requested"].samples == [pytest.approx(200.0)]


def test_events_of_renewals_fed_elsewhere_are_not_counted() -> None:
    journeys = Journeys(fed_at={"rx-1": 100.0})

    assert journeys.on_event("requested", requested("r-2", "rx-other"), 101.0) == []
    assert journeys.on_event("drafts", drafted("r-2", "d-2"), 101.0) == []
    assert journeys.on_event("drafts", {"event_type": "draft.created"}, 101.0) == []
    assert journeys.drafts == {}


def test_a_message_sent_completes_the_journey() -> None:
    journeys = Journeys(fed_at={"rx-1": 100.0})
    journeys.on_event("requested", requested("r-1", "rx-1"), 100.1)
    journeys.on_event("drafts", drafted("r-1", "d-1"), 100.2)

    sent = {"event_type": "message.sent", "renewal_id": "r-1"}
    assert journeys.on_event("messages", sent, 101.0) == ["sent"]
    assert journeys.to_sent.samples == [pytest.approx(1000.0)]


def test_a_profile_summary_gives_shares_by_area_and_by_function() -> None:
    folded = "\n".join(
        [
            "main (rxsm/cli.py:1);record_step (services/renewal/handlers.py:292);"
            "execute (sqlalchemy/orm/session.py:2283) 6",
            "main (rxsm/cli.py:1);record_step (services/renewal/handlers.py:292) 2",
            "worker (threading.py:1);export (opentelemetry/sdk/trace/export.py:1) 2",
        ]
    )

    summary = summarise(folded)

    assert "10 samples holding the GIL" in summary
    assert " 60.0%  sqlalchemy" in summary
    assert " 20.0%  rxsm renewal service" in summary
    assert " 20.0%  opentelemetry" in summary
    assert " 60.0%  execute (sqlalchemy/orm/session.py:2283)" in summary


def test_an_empty_profile_says_so() -> None:
    assert summarise("").startswith("no samples")
