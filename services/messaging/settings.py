"""The messaging service's identity and its own settings (``RXSM_*``), beside the ones every service
reads."""

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from plumbing.identity import ServiceIdentity
from schemas.vocabulary import Tool
from services.messaging.domain import PollSchedule

IDENTITY = ServiceIdentity("messaging", Tool.SM)

DEMO_SM_DATA = Path(__file__).resolve().parent.parent / "careteam" / "data" / "demo_directory.json"
"""The repo's demo SM "all recipients" data, the built-in SM's recipients by default."""


class MessagingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RXSM_", extra="ignore")

    sm_api_url: str | None = Field(
        default=None,
        description="Base URL of an SM-compatible API; the built-in SM stand-in when unset.",
    )
    sm_api_timeout_seconds: float = Field(default=10.0, gt=0)
    sm_recipients_file: Path = Field(
        default=DEMO_SM_DATA, description="The built-in SM's recipients (SM all-recipients JSON)."
    )
    oh_poll_interval_seconds: float = Field(
        default=1.0, gt=0, description="Wait between status polls of an OH send (VA: 1)."
    )
    oh_poll_timeout_seconds: float = Field(
        default=60.0, gt=0, description="How long an OH send's status is polled (VA: 60)."
    )
    oh_poll_max_errors: int = Field(
        default=2, ge=0, description="Failed status polls in a row tolerated (VA: 2)."
    )

    def poll_schedule(self) -> PollSchedule:
        """How OH sends are polled; the defaults are vets-api's (``lib/sm/client/message_status.rb``)."""
        return PollSchedule(
            interval=self.oh_poll_interval_seconds,
            timeout=self.oh_poll_timeout_seconds,
            max_errors=self.oh_poll_max_errors,
        )
