"""The Veteran's care teams: the directory interface and the bundled demo directory."""

import json
from pathlib import Path
from typing import Any, Protocol

from services.careteam.domain import TriageGroup

DEMO_DIRECTORY = Path(__file__).resolve().parent.parent / "data" / "demo_directory.json"


class CareTeamDirectory(Protocol):
    async def triage_groups(self, veteran_id: str) -> list[TriageGroup]:
        """Every triage group the Veteran is associated with (blocked ones included)."""
        ...


class DemoDirectory:
    """Care teams from a JSON file in the repository (``data/demo_directory.json``)."""

    def __init__(self, path: Path = DEMO_DIRECTORY) -> None:
        data: dict[str, Any] = json.loads(path.read_text())
        self._veterans: dict[str, Any] = data["veterans"]

    async def triage_groups(self, veteran_id: str) -> list[TriageGroup]:
        veteran = self._veterans.get(veteran_id, {})
        return [TriageGroup.from_record(record) for record in veteran.get("careTeams", [])]
