"""The two SM adapters: the built-in stand-in, and the HTTP one against a local SM-compatible API."""

import json
from collections.abc import AsyncIterator
from pathlib import Path
from uuid import uuid4

import pytest

from schemas.vocabulary import Ehr
from services.messaging.adapters import storage
from services.messaging.adapters.upstream import (
    BuiltinSecureMessaging,
    HttpSecureMessaging,
    OutgoingMessage,
    SecureMessaging,
)
from services.messaging.domain import DeliveryStatus, SmError
from services.messaging.handlers import Sessions
from tests.messaging.conftest import (
    ALL_TRIAGE_TEAMS,
    BLOCKED_TEAM,
    MIGRATING_TEAM,
    OH_TEAM,
    VETERAN,
    VISTA_TEAM,
)
from tests.messaging.fake_sm import FakeSm


def message(
    recipient_id: int,
    key: str | None = None,
    ehr: Ehr = Ehr.VISTA,
    prescription_id: str | None = "22597817",
) -> OutgoingMessage:
    """A renewal (or a general message, without a prescription id) of its own draft (a database on
    PostgreSQL outlives the test), or of ``key``'s."""
    draft_id = key.split(".")[0] if key else str(uuid4())
    return OutgoingMessage(
        idempotency_key=key or f"{draft_id}.1",
        veteran_id=VETERAN,
        draft_id=draft_id,
        recipient_id=recipient_id,
        ehr=ehr,
        category="MEDICATIONS",
        subject="Renewal Needed",
        body="Please renew",
        prescription_id=prescription_id,
    )


@pytest.fixture(params=["builtin", "http"])
async def upstream(
    request: pytest.FixtureRequest, sessions: Sessions, recipients_file: Path, fake_sm: FakeSm
) -> AsyncIterator[SecureMessaging]:
    adapter: SecureMessaging = (
        BuiltinSecureMessaging(sessions, recipients_file)
        if request.param == "builtin"
        else HttpSecureMessaging(fake_sm.url, timeout_seconds=GENEROUS)
    )
    try:
        yield adapter
    finally:
        await adapter.close()


async def test_recipients_are_the_allowed_teams_and_the_blocked_ones_apart(
    upstream: SecureMessaging,
) -> None:
    recipients = await upstream.recipients(VETERAN)
    assert {team.triageTeamId: team.ehr for team in recipients.allowed} == {
        VISTA_TEAM: Ehr.VISTA,
        OH_TEAM: Ehr.ORACLE_HEALTH,
    }, "blocked, migrating and non-preferred teams are not allowed"
    assert recipients.blocked == {BLOCKED_TEAM, MIGRATING_TEAM}
    assert (await upstream.recipients("1013599370V295311")).allowed == ()


async def test_a_vista_send_is_sent_at_once_and_the_same_key_answers_the_same_message(
    upstream: SecureMessaging,
) -> None:
    draft_id = uuid4()
    first = await upstream.send(message(VISTA_TEAM, key=f"{draft_id}.1"))
    again = await upstream.send(message(VISTA_TEAM, key=f"{draft_id}.1"))
    other = await upstream.send(message(VISTA_TEAM, key=f"{draft_id}.2"))
    assert first.status is DeliveryStatus.SENT
    assert again == first
    assert other.message_id != first.message_id


async def test_an_oracle_health_send_is_accepted_then_sent(upstream: SecureMessaging) -> None:
    receipt = await upstream.send(message(OH_TEAM, ehr=Ehr.ORACLE_HEALTH))
    assert receipt.status is DeliveryStatus.PENDING
    statuses = [await upstream.status(receipt.message_id) for _ in range(2)]
    assert statuses[-1] is DeliveryStatus.SENT


GENEROUS = 5.0
"""Seconds an HTTP call to the local fake SM may take where the test is not about timeouts (a busy
machine can take far longer than usual)."""


def http(fake_sm: FakeSm, timeout_seconds: float = GENEROUS) -> HttpSecureMessaging:
    return HttpSecureMessaging(fake_sm.url, timeout_seconds=timeout_seconds)


@pytest.mark.parametrize(
    ("failure", "code", "retryable"),
    [
        ((503, None), "SM901", True),
        ((500, None), "SM99", True),
        ((422, "SM151"), "SM151", False),
        ((422, "SM129"), "SM129", False),
        ((503, "SM903"), "SM903", True),
    ],
    ids=["unavailable", "broken", "blocked", "no longer associated", "sm903"],
)
async def test_an_sm_error_answer_becomes_its_sm_error(
    fake_sm: FakeSm, failure: tuple[int, str | None], code: str, retryable: bool
) -> None:
    upstream = http(fake_sm)
    fake_sm.behaviour.failure = failure
    with pytest.raises(SmError) as error:
        await upstream.send(message(VISTA_TEAM))
    assert (error.value.code, error.value.retryable) == (code, retryable)
    await upstream.close()


async def test_a_timeout_is_sm901_and_the_retry_finds_the_message_sm_kept(fake_sm: FakeSm) -> None:
    impatient, patient = http(fake_sm, timeout_seconds=0.3), http(fake_sm)
    outgoing = message(VISTA_TEAM)
    fake_sm.behaviour.delay_seconds = 1.0
    with pytest.raises(SmError) as error:
        await impatient.send(outgoing)
    assert (error.value.code, error.value.retryable) == ("SM901", True)
    fake_sm.behaviour.delay_seconds = 0
    receipt = await patient.send(outgoing)
    assert list(fake_sm.messages) == [receipt.message_id]
    await impatient.close()
    await patient.close()


async def test_an_oracle_health_failure_is_reported_as_failed(fake_sm: FakeSm) -> None:
    upstream = http(fake_sm)
    fake_sm.behaviour.oh_outcome = "FAILED"
    receipt = await upstream.send(message(OH_TEAM, ehr=Ehr.ORACLE_HEALTH))
    assert await upstream.status(receipt.message_id) is DeliveryStatus.PENDING
    assert await upstream.status(receipt.message_id) is DeliveryStatus.FAILED
    await upstream.close()


@pytest.mark.parametrize(
    ("prescription_id", "path"),
    [("22597817", "/messages/renewal"), (None, "/messages"), ("", "/messages")],
    ids=["renewal", "general message", "blank prescription id"],
)
async def test_a_renewal_is_sent_to_sms_renewal_endpoint(
    fake_sm: FakeSm, prescription_id: str | None, path: str
) -> None:
    """vets-api lib/sm/client/message_sending.rb: ``renewal_message?(args) ? 'message/renewal' :
    'message'`` (``prescription_id.present?``); VA's recorded renewal send
    (spec/support/vcr_cassettes/sm_client/messages/creates/a_renewal_message.yml) carries the
    prescription id in its payload. The same goes for Oracle Health and VistA teams."""
    upstream = http(fake_sm)
    for team, ehr in ((VISTA_TEAM, Ehr.VISTA), (OH_TEAM, Ehr.ORACLE_HEALTH)):
        receipt = await upstream.send(message(team, ehr=ehr, prescription_id=prescription_id))
        stored = fake_sm.messages[receipt.message_id]
        assert stored.path == path
        assert stored.payload.get("prescription_id") == (prescription_id or None)
        assert stored.payload["recipient_id"] == team
    await upstream.close()


async def test_the_builtin_sm_keeps_a_prescription_id_only_for_a_renewal(
    sessions: Sessions, recipients_file: Path
) -> None:
    builtin = BuiltinSecureMessaging(sessions, recipients_file)
    for prescription_id, kept in (("22597817", "22597817"), ("  ", None), (None, None)):
        outgoing = message(VISTA_TEAM, prescription_id=prescription_id)
        await builtin.send(outgoing)
        async with sessions() as session:
            row = await storage.builtin_message(session, outgoing.idempotency_key)
        assert row is not None and row.prescription_id == kept


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        ({"status": "SENT"}, DeliveryStatus.SENT),
        ({"status": "failed"}, DeliveryStatus.FAILED),
        ({"status": "INVALID"}, DeliveryStatus.INVALID),
        ({"status": "UNKNOWN"}, DeliveryStatus.UNKNOWN),
        ({"data": {"status": "NOT_SUPPORTED"}}, DeliveryStatus.NOT_SUPPORTED),
        ({"messageId": 674838, "status": "IN_PROGRESS"}, DeliveryStatus.PENDING),
        ({"status": None}, DeliveryStatus.PENDING),
        ({}, DeliveryStatus.PENDING),
    ],
    ids=["sent", "failed", "invalid", "unknown", "under data", "in progress", "null", "none"],
)
async def test_an_oracle_health_status_is_read_as_vets_api_reads_it(
    fake_sm: FakeSm, answer: dict[str, object], status: DeliveryStatus
) -> None:
    """vets-api lib/sm/client/message_status.rb ``get_message_status``: the status under ``data`` or
    bare, upper-cased; VA's recorded polls (spec/support/vcr_cassettes/sm_client/messages/creates/
    status_polling_sequence.yml) answer ``IN_PROGRESS`` before ``SENT``."""
    upstream = http(fake_sm)
    receipt = await upstream.send(message(OH_TEAM, ehr=Ehr.ORACLE_HEALTH))
    fake_sm.behaviour.poll_script = [(200, answer)]
    assert await upstream.status(receipt.message_id) is status
    await upstream.close()


@pytest.mark.parametrize(
    ("answer", "code"),
    [((404, {"errorCode": "SM904"}), "SM904"), ((200, [1, 2]), "SM99"), ((500, None), "SM99")],
    ids=["not found", "not an object", "broken"],
)
async def test_a_failed_status_poll_is_an_sm_error(
    fake_sm: FakeSm, answer: tuple[int, object], code: str
) -> None:
    upstream = http(fake_sm)
    receipt = await upstream.send(message(OH_TEAM, ehr=Ehr.ORACLE_HEALTH))
    fake_sm.behaviour.poll_script = [answer]
    with pytest.raises(SmError) as error:
        await upstream.status(receipt.message_id)
    assert error.value.code == code
    await upstream.close()


async def test_an_unreachable_sm_is_sm901(fake_sm: FakeSm) -> None:
    upstream = HttpSecureMessaging("http://127.0.0.1:9", timeout_seconds=0.3)
    with pytest.raises(SmError) as error:
        await upstream.recipients(VETERAN)
    assert error.value.code == "SM901"
    await upstream.close()


@pytest.mark.parametrize(
    ("phase", "blocked"), [("p2", False), ("p3", True), ("p6", True), ("p7", False)]
)
async def test_the_builtin_sm_blocks_teams_of_a_facility_mid_migration(
    sessions: Sessions, tmp_path: Path, phase: str, blocked: bool
) -> None:
    schedule = {"facilities": [{"facilityId": "554"}], "phases": {"current": phase}}
    data = {
        "veterans": {
            VETERAN: {"allTriageTeams": ALL_TRIAGE_TEAMS, "migrationSchedules": [schedule]}
        }
    }
    (tmp_path / "sm.json").write_text(json.dumps(data))
    recipients = await BuiltinSecureMessaging(sessions, tmp_path / "sm.json").recipients(VETERAN)
    assert (VISTA_TEAM in recipients.blocked) is blocked
    assert any(team.triageTeamId == VISTA_TEAM for team in recipients.allowed) is not blocked
    assert OH_TEAM not in recipients.blocked, "other facilities are not affected"
