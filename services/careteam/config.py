"""The care-team service's identity and settings (``RXSM_*`` environment variables)."""

from pydantic import Field

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

    @property
    def directory_budget(self) -> DirectoryBudget:
        return DirectoryBudget(
            attempts=self.careteam_directory_attempts,
            backoff_seconds=self.careteam_directory_backoff_seconds,
            deadline_seconds=self.careteam_directory_deadline_seconds,
        )
