"""Which service a process is, and which tool (meds or sm) owns its work."""

from dataclasses import dataclass

from schemas.vocabulary import Tool


@dataclass(frozen=True)
class ServiceIdentity:
    name: str
    tool: Tool

    @property
    def consumer_group(self) -> str:
        return f"rxsm-{self.name}"
