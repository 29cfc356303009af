"""The messaging use cases on a real database (SQLite, and PostgreSQL in CI): prefill once, edit,
delete, and send exactly once, VistA and Oracle Health, against the built-in SM and the HTTP one."""

import asyncio
from uuid import UUID, uuid4

import pytest
from sqlalchemy import func, select

from schemas.events import (
    CareTeamsResolved,
    DraftCreated,
    DraftDeleted,
    DraftUpdated,
    MessageSendFailed,
    MessageSent,
    Platform,
    TeamSelection,
)
from schemas.records import CareSystem, CareTeam, Prescription
from schemas.vocabulary import Category, Cohort, Ehr, PickerKind
from services.messaging import handlers
from services.messaging.adapters import storage
from services.messaging.adapters.storage import SendRow
from services.messaging.domain import DraftEdit, SendState, SmError
from services.messaging.handlers import Messaging, NewMessage
from tests.messaging.conftest import (
    BLOCKED_TEAM,
    MIGRATING_TEAM,
    NOT_PREFERRED_TEAM,
    OH_TEAM,
    VETERAN,
    VISTA_TEAM,
    staged,
)
from tests.messaging.fake_sm import FakeSm

STRANGER = "9999999999V999999"


def care_team(team_id: int, station: str, ehr: Ehr) -> CareTeam:
    return CareTeam(
        triageTeamId=team_id,
        name=f"TEAM {team_id}",
        displayName=f"Team {team_id}",
        stationNumber=station,
        careSystemName=f"Care system {station}",
        ehr=ehr,
    )


def resolved(suggested: int | None = VISTA_TEAM) -> CareTeamsResolved:
    """Care teams resolved for a new renewal of ``VETERAN``: a VistA and an OH care system."""
    return CareTeamsResolved(
        renewal_id=uuid4(),
        veteran_id=VETERAN,
        ehr=Ehr.VISTA,
        prescription=Prescription(
            prescriptionId="22597817", prescriptionName="LISINOPRIL 10MG TAB", stationNumber="554"
        ),
        care_systems=[
            CareSystem(
                stationNumber="554",
                careSystemName="Care system 554",
                ehr=Ehr.VISTA,
                teams=[care_team(VISTA_TEAM, "554", Ehr.VISTA)],
            ),
            CareSystem(
                stationNumber="757",
                careSystemName="Care system 757",
                ehr=Ehr.ORACLE_HEALTH,
                teams=[care_team(OH_TEAM, "757", Ehr.ORACLE_HEALTH)],
            ),
        ],
        suggested_team_id=suggested,
        picker=PickerKind.RADIO,
    )


async def renewal_draft(deps: Messaging, suggested: int | None = VISTA_TEAM) -> DraftCreated:
    created = await handlers.create_renewal_draft(resolved(suggested), deps)
    assert created is not None
    return created


async def new_message(deps: Messaging, recipient_id: int) -> UUID:
    draft = await handlers.start_message(
        VETERAN,
        NewMessage(
            recipient_id=recipient_id,
            team_selection=TeamSelection.CARE_SYSTEM_PICKER,
            category=Category.APPOINTMENTS,
            subject="Moving my appointment",
            body="Can we move it to the afternoon?",
            platform=Platform.MOBILE,
            cohort=Cohort.NEW,
        ),
        deps,
    )
    return UUID(draft.id)


async def refused(call: object) -> str:
    with pytest.raises(SmError) as error:
        await call  # type: ignore[misc]
    return error.value.code


async def builtin_messages(deps: Messaging, draft_id: UUID) -> int:
    async with deps.sessions() as session:
        return len(await storage.builtin_messages_of_draft(session, draft_id))


async def test_a_resolved_renewal_is_prefilled_once_and_addressed_to_the_suggested_team(
    builtin: Messaging,
) -> None:
    event = resolved()
    created = await handlers.create_renewal_draft(event, builtin)
    assert created is not None
    assert (created.recipient_id, created.station_number, created.team_selection) == (
        VISTA_TEAM,
        "554",
        TeamSelection.SUGGESTED,
    )
    draft = await handlers.get_draft(created.draft_id, VETERAN, builtin)
    assert draft.subject == "Renewal Needed"
    assert draft.category == Category.MEDICATIONS
    assert draft.body.splitlines()[0] == "Medication name, strength, and form: LISINOPRIL 10MG TAB"
    assert draft.picker_kind is PickerKind.RADIO
    assert [system.stationNumber for system in draft.candidates()] == ["554", "757"]

    await handlers.send_draft(created.draft_id, VETERAN, None, builtin)
    republished = event.model_copy(update={"event_id": uuid4()})
    assert await handlers.create_renewal_draft(republished, builtin) is None
    assert (
        await refused(handlers.get_draft(created.draft_id, VETERAN, builtin)) == "draft_not_found"
    )
    async with builtin.sessions() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(storage.DraftRow)
            .where(storage.DraftRow.renewal_id == str(event.renewal_id))
        )
    assert count == 1, "the renewal's care teams again after the send prefill nothing again"


async def test_a_renewal_without_a_suggestion_waits_for_a_care_team(builtin: Messaging) -> None:
    created = await renewal_draft(builtin, suggested=None)
    assert created.recipient_id is None and created.team_selection is None
    assert await refused(handlers.send_draft(created.draft_id, VETERAN, None, builtin)) == (
        "recipient_required"
    )


async def test_a_renewal_draft_goes_to_one_of_its_candidates(builtin: Messaging) -> None:
    created = await renewal_draft(builtin)
    to_oh = DraftEdit(recipient_id=OH_TEAM, team_selection=TeamSelection.CARE_SYSTEM_PICKER)
    draft = await handlers.edit_draft(created.draft_id, VETERAN, to_oh, builtin)
    assert (draft.recipient_id, draft.ehr, draft.station_number) == (
        OH_TEAM,
        "oracle_health",
        "757",
    )
    [updated] = await staged(builtin, created.draft_id, "draft.updated")
    assert isinstance(updated, DraftUpdated)
    assert updated.changed == ["recipient_id"]
    assert updated.team_selection is TeamSelection.CARE_SYSTEM_PICKER

    for team_id, code in [(BLOCKED_TEAM, "SM151"), (NOT_PREFERRED_TEAM, "SM119"), (123, "SM119")]:
        edit = DraftEdit(recipient_id=team_id, team_selection=TeamSelection.RECENT)
        assert await refused(handlers.edit_draft(created.draft_id, VETERAN, edit, builtin)) == code
    assert len(await staged(builtin, created.draft_id, "draft.updated")) == 1, (
        "a refused edit stages nothing"
    )


async def test_a_general_message_goes_to_a_team_sm_allows(builtin: Messaging) -> None:
    draft_id = await new_message(builtin, OH_TEAM)
    [created] = await staged(builtin, draft_id, "draft.created")
    assert isinstance(created, DraftCreated)
    assert created.renewal_id is None
    assert (created.ehr, created.category, created.platform) == (
        Ehr.ORACLE_HEALTH,
        Category.APPOINTMENTS,
        Platform.MOBILE,
    )
    assert created.key == str(draft_id).encode()
    for team_id, code in [
        (BLOCKED_TEAM, "SM151"),
        (MIGRATING_TEAM, "SM151"),
        (NOT_PREFERRED_TEAM, "SM119"),
        (4242, "SM119"),
    ]:
        assert await refused(new_message(builtin, team_id)) == code


async def test_a_deleted_draft_is_gone(builtin: Messaging) -> None:
    created = await renewal_draft(builtin)
    await handlers.delete_draft(created.draft_id, VETERAN, builtin)
    [deleted] = await staged(builtin, created.draft_id, "draft.deleted")
    assert isinstance(deleted, DraftDeleted) and deleted.draft_id == created.draft_id
    for call in (
        handlers.get_draft(created.draft_id, VETERAN, builtin),
        handlers.delete_draft(created.draft_id, VETERAN, builtin),
        handlers.send_draft(created.draft_id, VETERAN, None, builtin),
        handlers.edit_draft(created.draft_id, VETERAN, DraftEdit(body="x"), builtin),
    ):
        assert await refused(call) == "draft_not_found"


async def test_another_veterans_draft_is_not_found(builtin: Messaging) -> None:
    created = await renewal_draft(builtin)
    for call in (
        handlers.get_draft(created.draft_id, STRANGER, builtin),
        handlers.get_renewal_draft(created.renewal_id or uuid4(), STRANGER, builtin),
        handlers.edit_draft(created.draft_id, STRANGER, DraftEdit(body="x"), builtin),
        handlers.delete_draft(created.draft_id, STRANGER, builtin),
        handlers.send_draft(created.draft_id, STRANGER, None, builtin),
    ):
        assert await refused(call) == "draft_not_found"
    assert await handlers.get_draft(created.draft_id, VETERAN, builtin)


async def test_a_vista_send_is_one_message_however_often_it_is_sent(builtin: Messaging) -> None:
    created = await renewal_draft(builtin)
    first = await handlers.send_draft(created.draft_id, VETERAN, Platform.WEB, builtin)
    again = await handlers.send_draft(created.draft_id, VETERAN, None, builtin)
    assert again == first, "the same message.sent, same event id"
    assert await staged(builtin, created.draft_id, "message.sent") == [first], "staged once"
    assert (first.recipient_id, first.station_number, first.ehr, first.renewal_id) == (
        VISTA_TEAM,
        "554",
        Ehr.VISTA,
        created.renewal_id,
    )
    assert (first.team_selection, first.platform) == (TeamSelection.SUGGESTED, Platform.WEB)
    assert await builtin_messages(builtin, created.draft_id) == 1


async def test_an_oracle_health_send_is_accepted_then_sent(builtin: Messaging) -> None:
    draft_id = await new_message(builtin, OH_TEAM)
    sent = await handlers.send_draft(draft_id, VETERAN, None, builtin)
    assert sent.ehr is Ehr.ORACLE_HEALTH
    async with builtin.sessions() as session:
        send = await session.get(SendRow, str(draft_id))
    assert send is not None and send.state == SendState.SENT


async def test_a_double_click_sends_one_message(over_http: Messaging, fake_sm: FakeSm) -> None:
    draft_id = await new_message(over_http, OH_TEAM)
    first, second = await asyncio.gather(
        handlers.send_draft(draft_id, VETERAN, None, over_http),
        handlers.send_draft(draft_id, VETERAN, None, over_http),
    )
    assert first.message_id == second.message_id
    assert first.event_id == second.event_id
    assert len(fake_sm.messages) == 1
    assert await staged(over_http, draft_id, "message.sent") == [first]


async def test_an_oracle_health_failure_is_sm98_and_the_draft_stays(
    over_http: Messaging, fake_sm: FakeSm
) -> None:
    fake_sm.behaviour.oh_outcome = "FAILED"
    draft_id = await new_message(over_http, OH_TEAM)
    assert await refused(handlers.send_draft(draft_id, VETERAN, None, over_http)) == "SM98"
    [failed] = await staged(over_http, draft_id, "message.send_failed")
    assert isinstance(failed, MessageSendFailed)
    assert (failed.error_code, failed.retryable, failed.tool) == ("SM98", False, "sm")
    assert failed.message_id in fake_sm.messages
    assert await handlers.get_draft(draft_id, VETERAN, over_http), "the Veteran can send again"

    fake_sm.behaviour.oh_outcome = "SENT"
    await handlers.edit_draft(draft_id, VETERAN, DraftEdit(body="Trying again"), over_http)
    sent = await handlers.send_draft(draft_id, VETERAN, None, over_http)
    assert sent.message_id != failed.message_id, "a new attempt after a final failure"
    assert len(fake_sm.messages) == 2
    assert fake_sm.messages[sent.message_id].payload["body"] == "Trying again"


async def test_a_send_that_timed_out_is_retried_as_the_same_message(
    over_http: Messaging, fake_sm: FakeSm
) -> None:
    draft_id = await new_message(over_http, VISTA_TEAM)
    fake_sm.behaviour.delay_seconds = 2.5
    assert await refused(handlers.send_draft(draft_id, VETERAN, None, over_http)) == "SM901"
    [failed] = await staged(over_http, draft_id, "message.send_failed")
    assert isinstance(failed, MessageSendFailed) and failed.retryable
    edit = DraftEdit(body="Something else")
    assert await refused(handlers.edit_draft(draft_id, VETERAN, edit, over_http)) == (
        "send_pending"
    ), "SM may have the message: it can't change until a send settles it"

    fake_sm.behaviour.delay_seconds = 0
    sent = await handlers.send_draft(draft_id, VETERAN, None, over_http)
    assert list(fake_sm.messages) == [sent.message_id], "SM kept one message for both tries"


async def test_an_unconfirmed_oracle_health_send_resumes_on_the_same_message(
    over_http: Messaging, fake_sm: FakeSm
) -> None:
    """Out of time polling is vets-api's gateway timeout (lib/sm/client/message_status.rb), rxsm's
    ``oh_send_timeout``: the message SM accepted stays the send's, and sending again polls it again."""
    fake_sm.behaviour.oh_outcome = "IN_PROGRESS"
    draft_id = await new_message(over_http, OH_TEAM)
    assert await refused(handlers.send_draft(draft_id, VETERAN, None, over_http)) == (
        "oh_send_timeout"
    )
    assert fake_sm.sends == 1
    [failed] = await staged(over_http, draft_id, "message.send_failed")
    assert isinstance(failed, MessageSendFailed)
    assert (failed.error_code, failed.retryable) == ("oh_send_timeout", True)
    assert failed.message_id in fake_sm.messages
    assert fake_sm.messages[failed.message_id].polls > 1, "polled until the bound"

    fake_sm.behaviour.oh_outcome = "SENT"
    sent = await handlers.send_draft(draft_id, VETERAN, None, over_http)
    assert fake_sm.sends == 1, "resumed polling; nothing sent again"
    assert isinstance(sent, MessageSent) and sent.message_id == failed.message_id


@pytest.mark.parametrize(
    ("outcome", "code"),
    [
        ("SENT", None),
        ("UNKNOWN", None),
        ("NOT_SUPPORTED", None),
        ("FAILED", "SM98"),
        ("INVALID", "SM98"),
    ],
)
async def test_an_oracle_health_send_ends_as_its_final_status_says(
    over_http: Messaging, fake_sm: FakeSm, outcome: str, code: str | None
) -> None:
    """vets-api lib/sm/client/message_status.rb ``poll_status``: SM98 for FAILED and INVALID, the
    message (sent) for SENT, UNKNOWN and NOT_SUPPORTED."""
    fake_sm.behaviour.oh_outcome = outcome
    draft_id = await new_message(over_http, OH_TEAM)
    if code is None:
        sent = await handlers.send_draft(draft_id, VETERAN, None, over_http)
        assert await staged(over_http, draft_id, "message.sent") == [sent]
        return
    assert await refused(handlers.send_draft(draft_id, VETERAN, None, over_http)) == code
    assert [e.event_type for e in await staged(over_http, draft_id)][-1] == "message.send_failed"


async def test_three_failed_polls_in_a_row_end_the_send_and_sending_again_resumes_it(
    over_http: Messaging, fake_sm: FakeSm
) -> None:
    """vets-api lib/sm/client/message_status.rb: the third error in a row (``max_errors`` 2) ends the
    polling with that error; SM99 is retryable here, so the send keeps SM's message."""
    draft_id = await new_message(over_http, OH_TEAM)
    fake_sm.behaviour.poll_script = [(404, {"errorCode": "SM904"}), (500, None), (500, None)]
    assert await refused(handlers.send_draft(draft_id, VETERAN, None, over_http)) == "SM99"
    sent = await handlers.send_draft(draft_id, VETERAN, None, over_http)
    assert list(fake_sm.messages) == [sent.message_id]


async def test_two_failed_polls_in_a_row_are_tolerated(
    over_http: Messaging, fake_sm: FakeSm
) -> None:
    """VA's recorded sequence (spec/support/vcr_cassettes/sm_client/messages/creates/
    status_error_reset.yml): 404, 404, then SENT is sent."""
    fake_sm.behaviour.pending_polls = 0
    fake_sm.behaviour.poll_script = [(404, {"errorCode": "SM904"}), (404, {"errorCode": "SM904"})]
    draft_id = await new_message(over_http, OH_TEAM)
    sent = await handlers.send_draft(draft_id, VETERAN, None, over_http)
    assert fake_sm.messages[sent.message_id].polls == 3


async def test_a_renewal_goes_to_sms_renewal_endpoint_and_a_general_message_does_not(
    over_http: Messaging, fake_sm: FakeSm
) -> None:
    """vets-api lib/sm/client/message_sending.rb: a message with a prescription id is sent to
    ``message/renewal``, any other to ``message``. The renewal's draft keeps its prescription's id."""
    created = await renewal_draft(over_http)
    renewal = await handlers.send_draft(created.draft_id, VETERAN, None, over_http)
    general = await handlers.send_draft(
        await new_message(over_http, VISTA_TEAM), VETERAN, None, over_http
    )
    sent_renewal, sent_general = (fake_sm.messages[m.message_id] for m in (renewal, general))
    assert (sent_renewal.path, sent_renewal.payload["prescription_id"]) == (
        "/messages/renewal",
        "22597817",
    )
    assert sent_general.path == "/messages"
    assert "prescription_id" not in sent_general.payload
