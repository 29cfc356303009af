"""The benchmark's own accounting: joining a renewal's events, and summarising a profile."""

import pytest

from bench.profiling import ROOT, summarise
from bench.rxsm_bench import Journeys, Sends


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

    assert journeys.on_event("drafts", drafted("r-1", "d-1"), 100.5) == []
    assert journeys.on_event("requested", requested("r-1", "rx-1"), 100.2) == ["drafted"]

    assert journeys.drafts == {"r-1": "d-1"}
    assert journeys.to_draft.samples == [pytest.approx(500.0)]
    assert journeys.stages["renewal.requested"].samples == [pytest.approx(200.0)]


def test_events_of_renewals_fed_elsewhere_are_not_counted() -> None:
    journeys = Journeys(fed_at={"rx-1": 100.0})

    assert journeys.on_event("requested", requested("r-2", "rx-other"), 101.0) == []
    assert journeys.on_event("drafts", drafted("r-2", "d-2"), 101.0) == []
    assert journeys.on_event("drafts", {"event_type": "draft.created"}, 101.0) == []
    assert journeys.drafts == {}


def test_a_send_is_timed_from_its_post_to_its_message_sent() -> None:
    sends = Sends(posted_at={"d-1": 100.0})

    assert sends.on_event("messages", {"event_type": "message.sent", "draft_id": "d-1"}, 100.25)
    assert sends.to_event.samples == [pytest.approx(250.0)]


def test_messages_of_drafts_sent_elsewhere_or_failed_are_not_counted() -> None:
    sends = Sends(posted_at={"d-1": 100.0})

    assert not sends.on_event("messages", {"event_type": "message.sent", "draft_id": "d-2"}, 101.0)
    assert not sends.on_event(
        "messages", {"event_type": "message.send_failed", "draft_id": "d-1"}, 101.0
    )
    assert sends.to_event.samples == []


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


def test_a_profile_names_libraries_by_their_package_from_py_spys_full_file_names() -> None:
    site = "/srv/.venv/lib/python3.11/site-packages"
    folded = "\n".join(
        [
            f"run (/usr/lib/python3.11/asyncio/events.py:80);"
            f"start_span ({site}/opentelemetry/sdk/trace/__init__.py:1107) 3",
            f"run (/usr/lib/python3.11/asyncio/events.py:80);"
            f"is_on ({ROOT}/plumbing/flags.py:149);apply ({site}/json_logic/apply.py:8) 1",
        ]
    )

    summary = summarise(folded)

    assert " 75.0%  opentelemetry" in summary
    assert " 25.0%  openfeature" in summary
    assert " 75.0%  start_span (opentelemetry/sdk/trace/__init__.py:1107)" in summary
    assert " 25.0%  apply (json_logic/apply.py:8)" in summary


def test_an_empty_profile_says_so() -> None:
    assert summarise("").startswith("no samples")
