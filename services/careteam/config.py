"""The care-team service's identity and settings (``RXSM_*`` environment variables)."""

from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from plumbing.identity import ServiceIdentity
from plumbing.settings import ServiceSettings
from schemas.vocabulary import Tool
from services.careteam.adapters.directory import DirectoryBudget

IDENTITY = ServiceIdentity("careteam", Tool.SM)


class CareTeamSettings(ServiceSettings):
    careteam_directory_url: str | None = Field(
        default=None,
        description="Base URL of an SM-compatible patient API; the bundled demo directory when unset.",
    )
    careteam_directory_timeout_seconds: float = Field(
        default=2.0, gt=0, description="Timeout of each call to the directory."
    )
    careteam_directory_attempts: int = Field(
        default=3, ge=1, description="Tries of a directory that times out or answers 5xx."
    )
    careteam_directory_backoff_seconds: float = Field(default=0.2, ge=0)
    careteam_directory_deadline_seconds: float = Field(
        default=5.0,
        gt=0,
        description="The most one renewal waits on the directory, all tries included.",
    )
    oh_pilot_veterans: Annotated[frozenset[str], NoDecode] = Field(
        default=frozenset(),
        description="Veteran ids offered Oracle Health care teams (comma-separated).",
    )
    oh_pilot_everyone: bool = Field(
        default=False, description="Offer Oracle Health care teams to every Veteran."
    )

    @field_validator("oh_pilot_veterans", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return frozenset(part.strip() for part in value.split(",") if part.strip())
        return value

    @property
    def directory_budget(self) -> DirectoryBudget:
        return DirectoryBudget(
            attempts=self.careteam_directory_attempts,
            backoff_seconds=self.careteam_directory_backoff_seconds,
            deadline_seconds=self.careteam_directory_deadline_seconds,
        )
