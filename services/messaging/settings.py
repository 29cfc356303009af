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
    oh_poll_attempts: int = Field(default=8, ge=1, description="Status polls of an OH send.")
    oh_poll_first_delay_seconds: float = Field(default=0.5, ge=0)
    oh_poll_max_delay_seconds: float = Field(default=4.0, ge=0)

    def poll_schedule(self) -> PollSchedule:
        return PollSchedule(
            attempts=self.oh_poll_attempts,
            first_delay=self.oh_poll_first_delay_seconds,
            max_delay=self.oh_poll_max_delay_seconds,
        )
