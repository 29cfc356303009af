"""Draft rules, recipient choice, SM error codes, Oracle Health statuses and polling, and the renewal
endpoint."""

import re
from dataclasses import replace

import pytest

from schemas.events import Platform, TeamSelection
from schemas.records import CareTeam
from schemas.vocabulary import Category, Ehr
from services.messaging import domain
from services.messaging.domain import (
    DeliveryStatus,
    DraftContent,
    DraftEdit,
    PollSchedule,
    SendState,
    SmError,
)
from services.messaging.settings import MessagingSettings

PRIMARY = CareTeam(
    triageTeamId=1013155,
    name="CHY PCMM RED TEAM 1",
    displayName="Primary care - Red team 1",
    stationNumber="442",
    careSystemName="VA Cheyenne health care",
    ehr=Ehr.VISTA,
)
OH_PRIMARY = CareTeam(
    triageTeamId=3075701,
    name="COL Primary Care",
    displayName="Primary care",
    stationNumber="757",
    careSystemName="VA Central Ohio health care",
    ehr=Ehr.ORACLE_HEALTH,
)
BLOCKED_ID = 1554003
OFFERED = [PRIMARY, OH_PRIMARY]

RENEWAL = DraftContent(
    renewal=True,
    category=Category.MEDICATIONS,
    subject="Renewal Needed",
    body="Medication name, strength, and form: LISINOPRIL 10MG TAB",
    recipient_id=PRIMARY.triageTeamId,
    station_number="442",
    ehr=Ehr.VISTA,
    team_selection=TeamSelection.SUGGESTED,
)
GENERAL = replace(RENEWAL, renewal=False, category=Category.OTHER, subject="Question")


@pytest.mark.parametrize(
    ("draft", "edit", "code"),
    [
        (RENEWAL, DraftEdit(subject="x" * 51), "subject_too_long"),
        (RENEWAL, DraftEdit(subject="   "), "subject_required"),
        (RENEWAL, DraftEdit(body=""), "body_required"),
        (RENEWAL, DraftEdit(body=" \n\t "), "body_required"),
        (RENEWAL, DraftEdit(category=Category.OTHER), "category_locked"),
        (RENEWAL, DraftEdit(recipient_id=OH_PRIMARY.triageTeamId), "team_selection_required"),
        (RENEWAL, DraftEdit(recipient_id=999, team_selection=TeamSelection.RECENT), "SM119"),
        (RENEWAL, DraftEdit(recipient_id=BLOCKED_ID, team_selection=TeamSelection.RECENT), "SM151"),
        (GENERAL, DraftEdit(recipient_id=999, team_selection=TeamSelection.RECENT), "SM119"),
    ],
    ids=[
        "subject of 51",
        "blank subject",
        "empty body",
        "blank body",
        "renewal category",
        "team without how",
        "unknown team",
        "blocked team",
        "unknown team, general",
    ],
)
def test_an_edit_the_veteran_must_fix_is_refused_with_its_code(
    draft: DraftContent, edit: DraftEdit, code: str
) -> None:
    with pytest.raises(SmError) as refused:
        domain.revise(draft, edit, OFFERED, {BLOCKED_ID})
    assert refused.value.code == code
    assert refused.value.status == 422
    assert refused.value.message


@pytest.mark.parametrize(
    ("draft", "edit", "changed"),
    [
        (RENEWAL, DraftEdit(subject="x" * 50), ["subject"]),
        (RENEWAL, DraftEdit(subject="Renewal Needed", body=RENEWAL.body), []),
        (RENEWAL, DraftEdit(category=Category.MEDICATIONS, body="Please renew"), ["body"]),
        (
            RENEWAL,
            DraftEdit(recipient_id=OH_PRIMARY.triageTeamId, team_selection=TeamSelection.RECENT),
            ["recipient_id"],
        ),
        (GENERAL, DraftEdit(category=Category.MEDICATIONS), ["category"]),
        (RENEWAL, DraftEdit(platform=Platform.MOBILE), []),
    ],
    ids=["subject of 50", "same words", "locked category kept", "new team", "category", "platform"],
)
def test_an_edit_changes_what_it_names(
    draft: DraftContent, edit: DraftEdit, changed: list[str]
) -> None:
    revised, names = domain.revise(draft, edit, OFFERED, {BLOCKED_ID})
    assert names == changed
    for field in ("subject", "body", "category", "recipient_id", "platform"):
        wanted = getattr(edit, field)
        assert getattr(revised, field) == (getattr(draft, field) if wanted is None else wanted)


def test_a_new_care_team_brings_its_station_ehr_and_how_it_was_chosen() -> None:
    edit = DraftEdit(recipient_id=OH_PRIMARY.triageTeamId, team_selection=TeamSelection.RECENT)
    revised, _ = domain.revise(RENEWAL, edit, OFFERED, set())
    assert (revised.station_number, revised.ehr, revised.team_selection) == (
        "757",
        Ehr.ORACLE_HEALTH,
        TeamSelection.RECENT,
    )


@pytest.mark.parametrize(
    ("draft", "code"),
    [
        (replace(RENEWAL, recipient_id=None, station_number=None), "recipient_required"),
        (replace(RENEWAL, body="  "), "body_required"),
        (replace(GENERAL, subject=""), "subject_required"),
    ],
    ids=["no care team", "blank body", "no subject"],
)
def test_a_draft_is_sent_only_when_complete(draft: DraftContent, code: str) -> None:
    with pytest.raises(SmError) as refused:
        domain.check_sendable(draft)
    assert refused.value.code == code


def test_a_general_message_takes_any_category_and_the_picked_team() -> None:
    draft = domain.new_message(
        Category.APPOINTMENTS,
        "Appointment",
        "Can I move it?",
        OH_PRIMARY,
        TeamSelection.CARE_SYSTEM_PICKER,
        Platform.WEB,
    )
    assert not draft.renewal
    assert (draft.category, draft.recipient_id, draft.ehr) == (
        Category.APPOINTMENTS,
        3075701,
        Ehr.ORACLE_HEALTH,
    )


EXCEPTIONS = "vets-api config/locales/exceptions.en.yml (fb855685c7c89553376dfcc3cd65e80b9ec5ce53)"
MESSAGE_STATUS = (
    "vets-api lib/sm/client/message_status.rb (04f2427ade4b67fdaa53c6d8049c715d882b1f11)"
)
MESSAGE_SENDING = (
    "vets-api lib/sm/client/message_sending.rb (renewal_message?, PR #26523; recorded in "
    "spec/support/vcr_cassettes/sm_client/messages/creates/a_renewal_message.yml, 8decde92)"
)


@pytest.mark.parametrize(
    ("code", "status", "meaning", "retryable", "kind"),
    [
        ("SM119", 422, "Triage team does not exist", False, "sm_refused"),
        (
            "SM129",
            422,
            "Unable to reply because you are no longer associated with this Triage Team",
            False,
            "sm_refused",
        ),
        ("SM151", 422, "User is blocked from the Facility", False, "sm_refused"),
        ("SM900", 503, "Service is temporarily unavailable", True, "sm_failed"),
        ("SM901", 503, "Service is temporarily unavailable", True, "sm_failed"),
        ("SM902", 503, "Service is temporarily unavailable", True, "sm_failed"),
        ("SM903", 503, "Service is temporarily unavailable", True, "sm_failed"),
        ("SM904", 404, "Message requested could not be found", False, "sm_refused"),
        ("SM98", 400, "Oracle Health message send failed", False, "sm_failed"),
        ("SM99", 502, "Something went wrong. Please try again later.", True, "sm_failed"),
    ],
)
def test_an_sm_error_code_has_vas_meaning_and_http_status(
    code: str, status: int, meaning: str, retryable: bool, kind: str
) -> None:
    """Each row is the code's ``status`` and ``detail`` in EXCEPTIONS. SM98 is a 400 there, though
    it says Oracle Health failed the message (so it is an SM failure, not a refusal); retryable is
    rxsm's: the 503s say "temporarily" and SM99 "try again later"."""
    error = domain.sm_error(code)
    assert (error.code, error.status, error.retryable, error.error_type) == (
        code,
        status,
        retryable,
        kind,
    )
    assert domain.SM_ERRORS[code].meaning == meaning
    assert error.message and error.message != meaning, "the Veteran is told what to do, in words"


@pytest.mark.parametrize("code", ["SM12345", "SM135", "draft_not_found", "oh_send_timeout", ""])
def test_a_code_sm_does_not_define_is_sms_generic_error(code: str) -> None:
    """What SM answers that is not one of SM's codes above is SM99 (EXCEPTIONS: "Unknown
    application error occurred"): rxsm's own names can't come from SM."""
    error = domain.sm_error(code)
    assert (error.code, error.status) == ("SM99", 502)


def test_rxsms_own_codes_are_named_apart_from_vas() -> None:
    assert set(domain.RXSM_ERRORS).isdisjoint(domain.SM_ERRORS)
    assert not [code for code in domain.RXSM_ERRORS if re.fullmatch(r"(SM|RX)\d+", code.upper())]


def test_a_draft_rxsm_does_not_hold_is_not_an_sm_code() -> None:
    error = domain.draft_not_found()
    assert (error.code, error.status, error.retryable, error.error_type) == (
        "draft_not_found",
        404,
        False,
        "request_refused",
    )


def test_running_out_of_time_polling_is_a_retryable_gateway_timeout() -> None:
    """MESSAGE_STATUS raises ``Common::Exceptions::GatewayTimeout`` when the polling runs out of
    time, which EXCEPTIONS answers as ``gateway_timeout``: status 504. rxsm names it its own way and
    keeps the send, so sending again resumes polling the same message."""
    error = domain.oh_send_timeout()
    assert (error.code, error.status, error.retryable, error.error_type) == (
        "oh_send_timeout",
        504,
        True,
        "sm_failed",
    )


@pytest.mark.parametrize(
    ("status", "final", "failure"),
    [
        (DeliveryStatus.PENDING, False, None),
        (DeliveryStatus.SENT, True, None),
        (DeliveryStatus.FAILED, True, "SM98"),
        (DeliveryStatus.INVALID, True, "SM98"),
        (DeliveryStatus.UNKNOWN, True, None),
        (DeliveryStatus.NOT_SUPPORTED, True, None),
    ],
)
def test_each_final_status_ends_the_polling_and_only_failed_or_invalid_is_sm98(
    status: DeliveryStatus, final: bool, failure: str | None
) -> None:
    """MESSAGE_STATUS: ``terminal_statuses`` are SENT FAILED INVALID UNKNOWN NOT_SUPPORTED;
    ``poll_status`` raises SM98 for FAILED and INVALID and returns the message for the others."""
    assert (status in domain.FINAL_STATUSES) is final
    error = domain.delivery_failure(status)
    assert (error.code if error else None) == failure


@pytest.mark.parametrize(
    ("word", "status"),
    [
        ("SENT", DeliveryStatus.SENT),
        ("sent", DeliveryStatus.SENT),
        ("not_supported", DeliveryStatus.NOT_SUPPORTED),
        ("Unknown", DeliveryStatus.UNKNOWN),
        ("IN_PROGRESS", DeliveryStatus.PENDING),
        ("PENDING", DeliveryStatus.PENDING),
        ("", DeliveryStatus.PENDING),
        (None, DeliveryStatus.PENDING),
    ],
)
def test_sms_status_word_is_read_upper_cased_and_any_other_word_is_not_final(
    word: str | None, status: DeliveryStatus
) -> None:
    """MESSAGE_STATUS ``get_message_status``: ``status&.to_s&.upcase``; ``poll_message_status`` polls
    again on any status not terminal (VA's recorded polls answer ``IN_PROGRESS``) or none."""
    assert domain.delivery_status(word) is status


@pytest.mark.parametrize(
    ("error", "before", "after"),
    [
        ("SM901", SendState.SUBMITTING, SendState.SUBMITTING),
        ("SM903", SendState.ACCEPTED, SendState.ACCEPTED),
        ("oh_send_timeout", SendState.ACCEPTED, SendState.ACCEPTED),
        ("SM99", SendState.ACCEPTED, SendState.ACCEPTED),
        ("SM98", SendState.ACCEPTED, SendState.FAILED),
        ("SM904", SendState.ACCEPTED, SendState.FAILED),
        ("SM151", SendState.SUBMITTING, SendState.FAILED),
    ],
)
def test_only_a_final_error_ends_a_send_attempt(
    error: str, before: SendState, after: SendState
) -> None:
    found = domain.oh_send_timeout() if error == "oh_send_timeout" else domain.sm_error(error)
    assert domain.state_after(found, before) is after


def test_polling_follows_vas_schedule_by_default() -> None:
    """MESSAGE_STATUS ``poll_status``: ``poll_message_status(message.id, timeout_seconds: 60,
    interval_seconds: 1, max_errors: 2)``; the settings default to the same."""
    assert PollSchedule() == PollSchedule(interval=1.0, timeout=60.0, max_errors=2)
    assert MessagingSettings(_env_file=None).poll_schedule() == PollSchedule()


@pytest.mark.parametrize(
    ("now", "ends"), [(0.0, False), (59.999, False), (60.0, True), (61.0, True)]
)
def test_the_polling_runs_out_of_time_at_its_deadline(now: float, ends: bool) -> None:
    """MESSAGE_STATUS: ``raise Common::Exceptions::GatewayTimeout if Time.zone.now >= deadline``,
    checked before each poll, the deadline being ``timeout_seconds`` after the polling started."""
    polling = domain.Polling.start(PollSchedule(), now=0.0)
    if not ends:
        polling.check_time(now)
        return
    with pytest.raises(SmError) as timeout:
        polling.check_time(now)
    assert timeout.value.code == "oh_send_timeout"


@pytest.mark.parametrize(
    ("polls", "ends_with"),
    [
        (["SM99"], None),
        (["SM99", "SM904"], None),
        (["SM99", "SM904", "SM901"], "SM901"),
        (["SM99", "SM99", "status", "SM99", "SM99"], None),
        (["SM99", "SM99", "status", "SM99", "SM99", "SM99"], "SM99"),
    ],
    ids=["one error", "two in a row", "three in a row", "reset by a status", "three after reset"],
)
def test_failed_polls_are_tolerated_up_to_max_errors_in_a_row(
    polls: list[str], ends_with: str | None
) -> None:
    """MESSAGE_STATUS: ``consecutive_errors += 1; raise e if consecutive_errors > max_errors``
    (max_errors 2), any error counting; a status that is not final starts the count again."""
    schedule = PollSchedule()
    polling = domain.Polling.start(schedule, now=0.0)
    raised: str | None = None
    for poll in polls:
        if poll == "status":
            polling = polling.after_status()
            continue
        try:
            polling = polling.after_error(domain.sm_error(poll), schedule)
        except SmError as error:
            raised = error.code
            break
    assert raised == ends_with


@pytest.mark.parametrize(
    ("prescription_id", "renewal"),
    [("22597817", True), ("0", True), (None, False), ("", False), ("   ", False)],
)
def test_a_message_naming_a_prescription_goes_to_the_renewal_endpoint(
    prescription_id: str | None, renewal: bool
) -> None:
    """MESSAGE_SENDING: ``path = renewal_message?(args) ? 'message/renewal' : 'message'``, where
    ``renewal_message?`` is ``prescription_id.present?`` (Ruby: not nil, not blank)."""
    assert domain.renewal_send(prescription_id) is renewal


@pytest.mark.parametrize(
    ("send", "editable"),
    [
        (None, True),
        (SendState.FAILED, True),
        (SendState.SUBMITTING, False),
        (SendState.ACCEPTED, False),
    ],
)
def test_a_draft_whose_send_is_unsettled_cannot_change(
    send: SendState | None, editable: bool
) -> None:
    if editable:
        domain.check_editable(send)
        return
    with pytest.raises(SmError) as refused:
        domain.check_editable(send)
    assert (refused.value.code, refused.value.status) == ("send_pending", 409)
