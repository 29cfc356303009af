"""When no care team can receive a renewal, the Veteran asking for its draft is told why: SM's reason
from the ``careteams.unavailable`` event, kept per renewal (ids and the reason only)."""

from datetime import UTC, datetime
from uuid import uuid4

import pytest
from sqlalchemy import func, select

from plumbing.batches import alone
from plumbing.outbox import ProcessedEventRow
from schemas.events import CareTeamUnavailable
from schemas.vocabulary import Ehr, UnavailableReason
from services.messaging import handlers
from services.messaging.adapters import storage
from services.messaging.domain import SmError
from services.messaging.handlers import Messaging
from tests.messaging.conftest import VETERAN
from tests.messaging.test_use_cases import STRANGER, resolved


def unavailable(reason: UnavailableReason) -> CareTeamUnavailable:
    return CareTeamUnavailable(renewal_id=uuid4(), veteran_id=VETERAN, ehr=Ehr.VISTA, reason=reason)


async def draft_answer(deps: Messaging, event: CareTeamUnavailable, veteran: str) -> SmError:
    with pytest.raises(SmError) as error:
        await handlers.get_renewal_draft(event.renewal_id, veteran, deps)
    return error.value


@pytest.mark.parametrize("reason", list(UnavailableReason))
async def test_the_draft_answer_says_no_care_team_and_why(
    builtin: Messaging, reason: UnavailableReason
) -> None:
    event = unavailable(reason)
    await handlers.record_no_care_team(event, builtin)

    error = await draft_answer(builtin, event, VETERAN)

    assert (error.status, error.code, error.details) == (
        404,
        "care_team_unavailable",
        {"reason": reason.value},
    )


async def test_vas_own_words_for_no_associations_and_all_blocked(builtin: Messaging) -> None:
    """vets-website src/applications/mhv-secure-messaging/util/constants.js,
    BlockedTriageAlertText: the alert's title, then its message."""
    for reason, title in [
        (
            UnavailableReason.NO_ASSOCIATIONS,
            "You're not connected to any care teams in this messaging tool",
        ),
        (
            UnavailableReason.ALL_BLOCKED,
            "You can't send messages to your care teams right now",
        ),
    ]:
        event = unavailable(reason)
        await handlers.record_no_care_team(event, builtin)
        assert (await draft_answer(builtin, event, VETERAN)).message.startswith(title)


async def test_another_veteran_is_told_only_that_there_is_no_draft(builtin: Messaging) -> None:
    event = unavailable(UnavailableReason.ALL_BLOCKED)
    await handlers.record_no_care_team(event, builtin)

    error = await draft_answer(builtin, event, STRANGER)

    assert (error.code, error.details) == ("draft_not_found", {})


async def test_a_renewal_not_resolved_yet_has_no_draft_yet(builtin: Messaging) -> None:
    error = await draft_answer(builtin, unavailable(UnavailableReason.ALL_BLOCKED), VETERAN)
    assert error.code == "draft_not_found"


async def test_a_redelivered_outcome_is_recorded_once_in_a_batch_with_drafts(
    builtin: Messaging,
) -> None:
    event = unavailable(UnavailableReason.FACILITY_MIGRATING)
    drafted = resolved()
    results = await handlers.create_renewal_drafts([event, drafted, event], builtin, alone)
    await handlers.record_no_care_team(event.model_copy(update={"event_id": uuid4()}), builtin)

    assert results[0] is None and results[1] is not None and results[2] is None
    async with builtin.sessions() as session:
        kept = await session.scalar(
            select(func.count())
            .select_from(storage.NoCareTeamRow)
            .where(storage.NoCareTeamRow.renewal_id == str(event.renewal_id))
        )
        inbox = await session.scalar(
            select(func.count())
            .select_from(ProcessedEventRow)
            .where(ProcessedEventRow.event_id == str(event.event_id))
        )
    assert (kept, inbox) == (1, 1)
    draft = await handlers.get_renewal_draft(drafted.renewal_id, VETERAN, builtin)
    assert draft.renewal_id == str(drafted.renewal_id)


async def test_retention_forgets_old_reasons_only(builtin: Messaging) -> None:
    old, new = (
        unavailable(UnavailableReason.ALL_BLOCKED),
        unavailable(UnavailableReason.ALL_BLOCKED),
    )
    await handlers.record_no_care_team(old, builtin)
    cutoff = datetime.now(UTC)
    await handlers.record_no_care_team(new, builtin)

    async with builtin.sessions.begin() as session:
        pruned = await storage.prune_no_care_team(session, cutoff, 1_000)
    assert pruned["renewals_without_care_team"] >= 1, (
        "the old one at least (the database is shared)"
    )

    assert (await draft_answer(builtin, old, VETERAN)).code == "draft_not_found"
    assert (await draft_answer(builtin, new, VETERAN)).code == "care_team_unavailable"
