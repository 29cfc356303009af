"""Where renewals are, for SREs: the journey service over HTTP (and, for a renewal the journey has not
seen, the renewal service's intake), and failures grouped by the tool that owns them (meds or sm), the
step and the error."""

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from plumbing.auth import AuthSettings, issue_service_token


class LedgerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RXSM_", extra="ignore")

    journey_url: str = Field(
        default="http://127.0.0.1:8004", description="The journey service, which keeps the ledger."
    )
    renewal_url: str = Field(
        default="http://127.0.0.1:8001",
        description="The renewal service, which answers for its intake (a renewal whose event is "
        "not on Kafka yet).",
    )


class Ledger(BaseModel):
    """The ledger's answers as the SRE commands read them (fields they don't use are ignored)."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class JourneyStep(Ledger):
    step: str
    tool: str
    at: datetime
    error_code: str | None = None
    retryable: bool | None = None
    detail: str | None = None
    topic_owner: str | None = None
    refused_by: str | None = None


class Failure(Ledger):
    tool: str
    step: str
    error_code: str | None = None


class Stalled(Ledger):
    waiting_for: str
    tool: str
    since: datetime
    detected_at: datetime


class RenewalSummary(Ledger):
    """Where a renewal is, and whose tool failed it or holds it up."""

    renewal_id: UUID
    status: str
    ehr: str
    cohort: str | None = None
    trace_id: str | None = None
    requested_at: datetime
    updated_at: datetime | None = None
    failure: Failure | None = None
    stalled: Stalled | None = None


class Journey(RenewalSummary):
    """A renewal's summary, and every step with its time and owning tool."""

    open: bool
    source: str | None = None
    steps: list[JourneyStep] = Field(default_factory=list)

    def elapsed(self, step: JourneyStep) -> timedelta:
        """How long after the request the step came."""
        return step.at - self.requested_at


class RenewalList(Ledger):
    renewals: list[RenewalSummary]


MOST_LISTED = 1000
"""The most renewals the ledger lists in one answer."""


class Intake(RenewalSummary):
    """A renewal request as the renewal service's intake knows it (before the journey has it)."""

    open: bool
    source: str | None = None


class LedgerUnavailable(Exception):
    """The service did not answer as the ledger (or the intake) does."""


class LedgerClient:
    """Reads the journey service's ledger at ``base_url`` (``service`` names it in errors)."""

    def __init__(
        self,
        base_url: str,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        service: str = "journey",
    ) -> None:
        self._base_url = base_url
        self._service = service
        token = issue_service_token(AuthSettings(), subject="rxsm-cli")
        self._http = httpx.Client(
            base_url=base_url,
            timeout=timeout,
            transport=transport,
            headers={"Authorization": f"Bearer {token}"},
        )

    def __enter__(self) -> "LedgerClient":
        return self

    def __exit__(self, *_: object) -> None:
        self._http.close()

    def journey(self, renewal_id: UUID) -> Journey | None:
        """The renewal's journey, or None when the ledger has no such renewal."""
        response = self._get(f"/v1/renewals/{renewal_id}")
        if response.status_code == 404:
            return None
        return Journey.model_validate(self._json(response))

    def intake(self, renewal_id: UUID) -> Intake | None:
        """The renewal request as the renewal service's intake knows it (a client of the renewal
        service), or None when it has no such request."""
        response = self._get(f"/v1/renewals/{renewal_id}")
        if response.status_code == 404:
            return None
        return Intake.model_validate(self._json(response))

    def failures(self, since: datetime, limit: int = MOST_LISTED) -> list[RenewalSummary]:
        """Renewals that failed or stalled since ``since`` (at most ``limit``, the latest first)."""
        response = self._get(
            "/v1/renewals",
            params={"status": "failed,stalled", "since": since.isoformat(), "limit": str(limit)},
        )
        listed = RenewalList.model_validate(self._json(response))
        return listed.renewals

    def _get(self, path: str, params: dict[str, str] | None = None) -> httpx.Response:
        try:
            return self._http.get(path, params=params)
        except httpx.HTTPError as error:
            raise LedgerUnavailable(
                f"the {self._service} service at {self._base_url} did not answer "
                f"({type(error).__name__})"
            ) from error

    def _json(self, response: httpx.Response) -> Any:
        if response.status_code != 200:
            raise LedgerUnavailable(
                f"the {self._service} service at {self._base_url} answered "
                f"{response.status_code} to {response.request.url.path}"
            )
        return response.json()


STALLED = "stalled"


@dataclass(frozen=True)
class FailureGroup:
    """Renewals that failed (or stalled) in the same tool, at the same step, with the same error.

    A stall is grouped under the step the renewal waits for and the tool that owns it."""

    tool: str
    step: str
    error: str
    renewal_ids: list[UUID] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.renewal_ids)


def _blamed(journey: RenewalSummary) -> tuple[str, str, str] | None:
    if journey.stalled is not None:
        return journey.stalled.tool, journey.stalled.waiting_for, STALLED
    if journey.failure is not None:
        failure = journey.failure
        return failure.tool, failure.step, failure.error_code or "unknown"
    return None


def group_failures(journeys: Iterable[RenewalSummary]) -> list[FailureGroup]:
    """Failed and stalled renewals by (tool, step, error), the largest group first."""
    groups: dict[tuple[str, str, str], list[UUID]] = {}
    for journey in journeys:
        blamed = _blamed(journey)
        if blamed is not None:
            groups.setdefault(blamed, []).append(journey.renewal_id)
    return [
        FailureGroup(tool, step, error, renewal_ids)
        for (tool, step, error), renewal_ids in sorted(
            groups.items(), key=lambda item: (-len(item[1]), item[0])
        )
    ]
