"""The care-team directory over HTTP: an SM-compatible patient API (the "all recipients" upstream).

Two calls per Veteran, made together: ``GET {base}/alltriageteams`` (MHV's list shape: the counts, then
the ``triageTeam`` records; or vets-api's JSON:API shape: ``data[].attributes`` and ``meta``) and
``GET {base}/folder/-1/message/page/1/pageSize/250`` (the Sent folder, of which only ``recipientId``
and ``sentDate`` are read). The Veteran's id travels in a header, never in the
URL, so it stays out of access logs. Each call is bounded by the client's timeout.
"""

import asyncio
from typing import Any

import httpx
from pydantic import TypeAdapter, ValidationError

from schemas.records import UpstreamDate
from services.careteam.adapters.directory import (
    AllTriageTeams,
    DirectoryError,
    SmRecord,
    veteran_care_teams,
)
from services.careteam.domain import SentMessage, VeteranCareTeams

ALL_TRIAGE_TEAMS = "alltriageteams"
SENT_FOLDER = "folder/-1/message/page/1/pageSize/250"
VETERAN_HEADER = "X-Veteran-ICN"


class SentMessageRecord(SmRecord):
    """One message of the Sent folder; its subject and body are never read."""

    recipient_id: int
    sent_date: UpstreamDate


SENT_MESSAGES = TypeAdapter(list[SentMessageRecord])


def directory_client(base_url: str, timeout_seconds: float) -> httpx.AsyncClient:
    """The HTTP client for ``SmApiDirectory``: every phase of every call bounded by the timeout."""
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(timeout_seconds),
        headers={"Accept": "application/json"},
    )


class SmApiDirectory:
    """Care teams and recent sends from an SM-compatible API, via ``directory_client``."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def care_teams(self, veteran_id: str) -> VeteranCareTeams:
        answers: tuple[Any, ...] = await asyncio.gather(
            self._get(ALL_TRIAGE_TEAMS, veteran_id),
            self._get(SENT_FOLDER, veteran_id),
            return_exceptions=True,
        )
        failed = [answer for answer in answers if isinstance(answer, BaseException)]
        if failed:
            raise failed[0]
        teams, sent = answers
        try:
            triage_teams = AllTriageTeams.from_sm(teams)
            messages = SENT_MESSAGES.validate_python(sent)
        except ValidationError as error:
            raise DirectoryError(
                f"the directory's answer is not SM's shape ({error.error_count()} problems)",
                transient=False,
            ) from None
        return veteran_care_teams(
            triage_teams, [SentMessage(m.recipient_id, m.sent_date) for m in messages]
        )

    async def _get(self, path: str, veteran_id: str) -> Any:
        try:
            response = await self._client.get(path, headers={VETERAN_HEADER: veteran_id})
        except httpx.TimeoutException:
            raise DirectoryError(f"{path}: timed out", transient=True) from None
        except httpx.TransportError as error:
            raise DirectoryError(f"{path}: {type(error).__name__}", transient=True) from None
        status = response.status_code
        if status >= 500 or status == 429:
            raise DirectoryError(f"{path}: answered {status}", transient=True)
        if status >= 400:
            raise DirectoryError(f"{path}: answered {status}", transient=False)
        try:
            return response.json()
        except ValueError:
            raise DirectoryError(f"{path}: the answer is not JSON", transient=False) from None
